"""Every channel's webhooks on the app: one route each, from the channel registry.

The channel's parser sees plain data (`WebhookRequest`) and verifies it
before reading a field; this module does the HTTP around it: read the body,
hand what was parsed to the core, and answer only after the commit, so a
provider's retry after a 5xx finds nothing half-stored and a 2xx means stored.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from channels import registry
from channels.base import (
    DeliveryReport,
    Webhook,
    WebhookParsed,
    WebhookRejected,
    WebhookRequest,
)
from hub.calls.service import CallLog
from hub.ingest.pipeline import IngestError, IngestUnavailable
from hub.outbox.queue import apply_status
from hub.runtime import Hub
from hub.web.auth import HUB
from hub.web.errors import error_response
from hub.web.query_check import nul_refusal

log = logging.getLogger(__name__)

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def read_request(request: web.Request) -> WebhookRequest:
    # aiohttp refuses a body over server.max_body_bytes here (413 via the error middleware).
    form: dict[str, str] = {}
    if request.content_type in FORM_TYPES:
        try:
            posted = await request.post()
        except (UnicodeDecodeError, LookupError, ValueError) as exc:
            # Bytes that are not in the declared charset, or a charset Python does
            # not know: the sender's mistake (or an attack), never a 500.
            raise WebhookRejected(400, f"the form body cannot be decoded: {exc}") from exc
        form = {k: v for k, v in posted.items() if isinstance(v, str)}
        nul = next((k for k, v in form.items() if "\x00" in k or "\x00" in v), None)
        if nul is not None:
            # No provider sends NUL, and PostgreSQL cannot store it in text.
            raise WebhookRejected(400, f"the form field {nul!r} contains a NUL character")
    return WebhookRequest(
        path_qs=request.path_qs,
        content_type=request.content_type,
        headers=request.headers,
        query=request.query,
        form=form,
        body=await request.read(),
    )


def handler(hook: Webhook) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        hub = request.app[HUB]
        try:
            parsed = hook.parse(await read_request(request))
        except WebhookRejected as exc:
            return error_response(exc.status, exc.detail)
        try:
            replies = await _ingest(hub, parsed)
        except IngestError as exc:
            return error_response(400, str(exc))
        except IngestUnavailable as exc:
            # Nothing stored; a 5xx makes the provider log it (and retry where configured).
            return error_response(503, str(exc), "unavailable", {"Retry-After": "1"})
        await _apply_reports(hub, parsed.reports)
        answer = parsed.answer or hook.answer(replies)
        return web.Response(
            status=answer.status,
            text=answer.body or None,
            content_type=answer.content_type,
            charset="utf-8" if answer.content_type else None,
        )

    return handle


async def _ingest(hub: Hub, parsed: WebhookParsed) -> list[str | None]:
    replies: list[str | None] = []
    for call in parsed.calls:
        replies.append(await CallLog(hub).handle(call))
    for contact in parsed.contacts:
        result = await hub.ingestor.ingest(contact)
        replies.append(result.reply)
    return replies


async def _apply_reports(hub: Hub, reports: Sequence[DeliveryReport]) -> None:
    for report in reports:
        async with hub.db.write() as s:
            matched, event = await apply_status(await s.connection(), report)
        if event is not None:
            hub.bus.publish(event)
        if not matched:
            # Answered 2xx all the same: an error would make the provider retry a
            # report that can never match.
            log.info(
                "status %s for unknown %s message %s ignored",
                report.status,
                report.channel.value,
                report.provider_id,
            )


def mount(app: web.Application, hub: Hub) -> list[web.AbstractRoute]:
    """One POST route per registered webhook, built from the hub's channel config."""
    return [
        app.router.add_post(hook.path, handler(hook))
        for _channel, hook in registry.webhooks(hub.settings)
    ]


def direct(routes: Collection[web.AbstractRoute]) -> Middleware:
    """A middleware that sends a request for one of `routes` (the webhooks) straight
    to its handler, past the middlewares after it.

    Those are for people and API clients (console session and CSRF, bearer
    token, audit of a principal's reads, the query parameters an operation
    documents) and let webhooks through untouched; only the NUL check of the
    query applies to every route, so it is made here too. Placed after the
    error middleware, whose answers webhooks keep (413 for a body over the
    limit, 503 when the database is away). Each middleware is a coroutine
    frame entered and resumed per request; at a few thousand webhooks a
    second that was measurable (bench/README.md).
    """

    @web.middleware
    async def webhooks_direct(request: web.Request, handler: Handler) -> web.StreamResponse:
        match_info = request.match_info
        if match_info.route not in routes:
            return await handler(request)
        if request.query_string:
            refused = nul_refusal(request)
            if refused is not None:
                return refused
        return await match_info.handler(request)

    return webhooks_direct
