"""POST /webhooks/twilio/sms/status: Twilio's delivery status callbacks.

Verified like the inbound webhook (signature over the public URL, including
our `?outbox=` query, and every parameter). A report for a message we do not
know is answered 200 and logged: an error would make Twilio retry a report
that can never match.
"""

from __future__ import annotations

import logging

from aiohttp import web

from channels.sms import signature
from channels.sms.status import InvalidStatusForm, parse_status
from hub.outbox.queue import apply_status
from hub.web.auth import HUB
from hub.web.errors import error_response

log = logging.getLogger(__name__)

routes = web.RouteTableDef()


@routes.post("/webhooks/twilio/sms/status")
async def sms_status(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    sms = hub.settings.sms
    if not sms.enabled:
        return error_response(404, "the SMS channel is not enabled")
    form = await request.post()
    params = {k: v for k, v in form.items() if isinstance(v, str)}
    url = signature.public_url(
        sms.public_url, request.path_qs, request.headers, trust_proxy=sms.trust_proxy
    )
    given = request.headers.get(signature.SIGNATURE_HEADER)
    if not signature.is_valid(sms.auth_token, url, params, given):
        detail = f"{signature.SIGNATURE_HEADER} {'does not match' if given else 'is missing'}"
        log.info("SMS status callback refused (%s); checked URL %s", detail, url)
        return error_response(403, detail)
    try:
        report = parse_status(params, request.query)
    except InvalidStatusForm as exc:
        return error_response(400, str(exc))
    async with hub.db.write() as s:
        matched, event = await apply_status(await s.connection(), report)
    if event is not None:
        hub.bus.publish(event)
    if not matched:
        log.info("status %s for unknown MessageSid %s ignored", report.status, report.provider_id)
    return web.Response(status=204)
