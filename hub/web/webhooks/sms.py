"""POST /webhooks/twilio/sms: inbound SMS from Twilio (see channels/sms).

Order matters: the signature is checked before any field of the form is
interpreted, so an unsigned request learns nothing about what we would
accept, and nothing is stored for it. The answer (TwiML) is sent only after
the ingest commit, and a retried or concurrent duplicate gets the very same
TwiML, because the reply is stored with the interaction.
"""

from __future__ import annotations

import logging

from aiohttp import web

from channels.sms.inbound import BodyTooLong, InvalidSmsForm, parse_inbound, twiml
from hub.ingest.pipeline import IngestError, IngestUnavailable
from hub.web.auth import HUB
from hub.web.errors import error_response
from hub.web.webhooks.twilio import Refused, signed_form

log = logging.getLogger(__name__)

FORM_TYPE = "application/x-www-form-urlencoded"

routes = web.RouteTableDef()


@routes.post("/webhooks/twilio/sms")
async def inbound_sms(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    sms = hub.settings.sms
    if not sms.enabled:
        return error_response(404, "the SMS channel is not enabled")
    if request.content_type != FORM_TYPE:
        return error_response(415, f"expected {FORM_TYPE}")
    try:
        params = await signed_form(request, sms, "SMS webhook")
    except Refused as refused:
        return refused.response
    try:
        contact = parse_inbound(params, max_body_chars=sms.max_body_chars)
    except BodyTooLong as exc:
        return error_response(413, str(exc))
    except InvalidSmsForm as exc:
        return error_response(400, str(exc))
    try:
        result = await hub.ingestor.ingest(contact)
    except IngestError as exc:
        return error_response(400, str(exc))
    except IngestUnavailable as exc:
        # Nothing stored; a 5xx makes Twilio log it (and retry where configured).
        return error_response(503, str(exc), "unavailable", {"Retry-After": "1"})
    return web.Response(text=twiml(result.reply), content_type="text/xml", charset="utf-8")
