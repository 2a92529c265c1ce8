"""POST /webhooks/twilio/sms/status: Twilio's delivery status callbacks.

Verified like the inbound webhook (signature over the public URL, including
our `?outbox=` query, and every parameter). A report for a message we do not
know is answered 200 and logged: an error would make Twilio retry a report
that can never match.
"""

from __future__ import annotations

import logging

from aiohttp import web

from channels.sms.status import InvalidStatusForm, parse_status
from hub.outbox.queue import apply_status
from hub.web.auth import HUB
from hub.web.errors import error_response
from hub.web.webhooks.twilio import Refused, signed_form

log = logging.getLogger(__name__)

routes = web.RouteTableDef()


@routes.post("/webhooks/twilio/sms/status")
async def sms_status(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    sms = hub.settings.sms
    if not sms.enabled:
        return error_response(404, "the SMS channel is not enabled")
    try:
        params = await signed_form(request, sms, "SMS status callback")
    except Refused as refused:
        return refused.response
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
