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

from channels.sms import signature
from channels.sms.inbound import BodyTooLong, InvalidSmsForm, parse_inbound, twiml
from hub.ingest.pipeline import IngestError, IngestUnavailable
from hub.web.auth import HUB
from hub.web.errors import error_response

log = logging.getLogger(__name__)

FORM_TYPE = "application/x-www-form-urlencoded"
# Twilio signs with a Webhooks shared key (not the auth token) when this is set.
SIGNATURE_SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"

routes = web.RouteTableDef()


@routes.post("/webhooks/twilio/sms")
async def inbound_sms(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    sms = hub.settings.sms
    if not sms.enabled:
        return error_response(404, "the SMS channel is not enabled")
    if request.content_type != FORM_TYPE:
        return error_response(415, f"expected {FORM_TYPE}")
    # aiohttp refuses a body over server.max_body_bytes here (413 via the error middleware).
    form = await request.post()
    params = {k: v for k, v in form.items() if isinstance(v, str)}
    url = signature.public_url(
        sms.public_url, request.path_qs, request.headers, trust_proxy=sms.trust_proxy
    )
    if not signature.is_valid(
        sms.auth_token, url, params, request.headers.get(signature.SIGNATURE_HEADER)
    ):
        return _forbidden(request, url, bool(sms.auth_token))
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


def _forbidden(request: web.Request, url: str, have_token: bool) -> web.Response:
    if not have_token:
        detail = "no Twilio auth token configured (CRMHUB_SMS__AUTH_TOKEN); nothing can be verified"
        log.warning("SMS webhook refused: %s", detail)
    elif request.headers.get(SIGNATURE_SETTINGS_HEADER):
        detail = "signed with a Twilio Webhooks shared key, which crmhub does not support"
    elif not request.headers.get(signature.SIGNATURE_HEADER):
        detail = f"missing {signature.SIGNATURE_HEADER}"
    else:
        detail = f"{signature.SIGNATURE_HEADER} does not match"
    # The URL we checked is the most common cause of a mismatch behind a proxy.
    log.info("SMS webhook refused (%s); checked URL %s", detail, url)
    return error_response(403, detail)
