"""/api/v1/campaigns: create, preview, schedule, pause, resume, cancel, statistics.

A campaign is made as a draft; `schedule` hands it to the scheduler (its
schedule as given at creation, or a new one in the body). The scheduler
(hub/campaigns/scheduler.py) fires the run, expansion queues the messages,
the dispatchers send them. README: Campaigns.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import Field

from hub.campaigns.scheduler import next_fire_times
from hub.campaigns.schemas import CampaignIn, CampaignPreviewIn, ScheduleIn
from hub.campaigns.stats import campaign_stats
from hub.campaigns.store import (
    as_json,
    create_campaign,
    get_campaign,
    list_campaigns,
    set_status,
    steps_of,
)
from hub.errors import Invalid
from hub.records.schemas import _In
from hub.segments import query
from hub.segments.store import get_segment, segment_filter
from hub.subscriptions.links import preview_unsubscribe_url
from hub.templating import TemplateError, recipient_contexts, render
from hub.templating.store import get_template
from hub.web.auth import HUB, principal_of
from hub.web.params import MAX_ID, path_int, read_body

routes = web.RouteTableDef()


class ScheduleBody(_In):
    schedule: ScheduleIn | None = Field(None)


async def _full(request: web.Request, row: Any) -> dict[str, Any]:
    async with request.app[HUB].db.read() as s:
        body = as_json(row, await steps_of(await s.connection(), row.id))
    if row.status in ("scheduled", "running") or row.schedule_kind == "cron":
        body["next_runs"] = [t.isoformat() for t in next_fire_times(row, datetime.now(UTC), 3)]
    return body


@routes.get("/api/v1/campaigns")
async def list_all(request: web.Request) -> web.Response:
    async with request.app[HUB].db.read() as s:
        conn = await s.connection()
        rows = await list_campaigns(conn, principal_of(request))
        items = [as_json(r, await steps_of(conn, r.id)) for r in rows]
    return web.json_response({"items": items})


@routes.post("/api/v1/campaigns")
async def create(request: web.Request) -> web.Response:
    body = await read_body(request, CampaignIn)
    hub = request.app[HUB]
    async with hub.db.write() as s:
        conn = await s.connection()
        campaign_id = await create_campaign(conn, principal_of(request), hub.settings, body)
        row = await get_campaign(conn, principal_of(request), campaign_id)
    return web.json_response(
        await _full(request, row),
        status=201,
        headers={"Location": f"/api/v1/campaigns/{campaign_id}"},
    )


@routes.get("/api/v1/campaigns/{id}")
async def show(request: web.Request) -> web.Response:
    async with request.app[HUB].db.read() as s:
        row = await get_campaign(await s.connection(), principal_of(request), path_int(request))
    return web.json_response(await _full(request, row))


@routes.post("/api/v1/campaigns/{id}/preview")
async def preview(request: web.Request) -> web.Response:
    """The first message as one customer would get it (a given one, else the first
    the segment selects), and how many the segment selects now."""
    body = await read_body(request, CampaignPreviewIn)
    hub = request.app[HUB]
    principal = principal_of(request)
    async with hub.db.read() as s:
        conn = await s.connection()
        row = await get_campaign(conn, principal, path_int(request))
        first = (await steps_of(conn, row.id))[0]
        template = await get_template(conn, first.template_id)
        flt = segment_filter(await get_segment(conn, None, row.segment_id))
        total = await query.count(conn, flt, principal)
        customer_id = body.customer_id
        if customer_id is None:
            sample = await query.preview(conn, flt, principal, 1)
            if not sample:
                raise Invalid("the segment selects nobody you may see; nothing to preview")
            customer_id = int(sample[0]["id"])
        contexts = await recipient_contexts(conn, [customer_id])
    if customer_id not in contexts:
        raise Invalid(f"customer_id: no customer {customer_id}")
    context = {**contexts[customer_id]}
    context["unsubscribe_url"] = preview_unsubscribe_url(hub.settings, customer_id)
    try:
        out = render(template.parts, context)
    except TemplateError as exc:
        return web.json_response(
            {"audience": total, "customer_id": customer_id, "error": exc.reason}, status=422
        )
    return web.json_response(
        {
            "audience": total,
            "customer_id": customer_id,
            "template_id": template.id,
            "version": template.version,
            "subject": out.subject,
            "html": out.html,
            "text": out.text,
            "body": out.body,
        }
    )


async def _change(request: web.Request, action: str) -> web.Response:
    schedule = None
    if action == "schedule" and request.can_read_body:
        schedule = (await read_body(request, ScheduleBody)).schedule
    hub = request.app[HUB]
    async with hub.db.write() as s:
        row = await set_status(
            await s.connection(), principal_of(request), path_int(request), action, schedule
        )
    hub.campaigns.wake()
    hub.dispatcher.wake()
    return web.json_response(await _full(request, row))


@routes.post("/api/v1/campaigns/{id}/schedule")
async def schedule(request: web.Request) -> web.Response:
    return await _change(request, "schedule")


@routes.post("/api/v1/campaigns/{id}/pause")
async def pause(request: web.Request) -> web.Response:
    return await _change(request, "pause")


@routes.post("/api/v1/campaigns/{id}/resume")
async def resume(request: web.Request) -> web.Response:
    return await _change(request, "resume")


@routes.post("/api/v1/campaigns/{id}/cancel")
async def cancel(request: web.Request) -> web.Response:
    return await _change(request, "cancel")


@routes.get("/api/v1/campaigns/{id}/stats")
async def stats(request: web.Request) -> web.Response:
    async with request.app[HUB].db.read() as s:
        conn = await s.connection()
        row = await get_campaign(conn, principal_of(request), path_int(request))
        figures = await campaign_stats(conn, row.id)
    return web.json_response({"status": row.status, "paused_reason": row.paused_reason, **figures})


_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
}
# For hub/web/openapi.py: (method, path, summary, parameters, body model, success status).
OPERATIONS: list[tuple[str, str, str, list[dict[str, Any]], type[_In] | None, str]] = [
    ("get", "/api/v1/campaigns", "Campaigns you may see", [], None, "200"),
    (
        "post",
        "/api/v1/campaigns",
        "Make a campaign (a draft): segment, channel, steps (send + follow-up rules), "
        "schedule (now | at a date-time in a time zone | cron), mailbox, rate; 422 naming "
        "what is wrong (an unknown template, a time the clocks skip, email without "
        "unsubscribe settings)",
        [],
        CampaignIn,
        "201",
    ),
    ("get", "/api/v1/campaigns/{id}", "A campaign, its steps and next runs", [_ID], None, "200"),
    (
        "post",
        "/api/v1/campaigns/{id}/preview",
        "The first message as a customer (given, or the segment's first) would get it",
        [_ID],
        CampaignPreviewIn,
        "200",
    ),
    (
        "post",
        "/api/v1/campaigns/{id}/schedule",
        "Hand a draft to the scheduler (optionally with a new schedule); 409 unless a draft",
        [_ID],
        ScheduleBody,
        "200",
    ),
    ("post", "/api/v1/campaigns/{id}/pause", "Pause: nothing more is sent", [_ID], None, "200"),
    ("post", "/api/v1/campaigns/{id}/resume", "Go on after a pause", [_ID], None, "200"),
    (
        "post",
        "/api/v1/campaigns/{id}/cancel",
        "Cancel: queued messages are never sent",
        [_ID],
        None,
        "200",
    ),
    (
        "get",
        "/api/v1/campaigns/{id}/stats",
        "Audience, suppressed by reason, sent, failed, blocked, uncertain, bounced, delivered, "
        "replied, unsubscribed; per step",
        [_ID],
        None,
        "200",
    ),
]
