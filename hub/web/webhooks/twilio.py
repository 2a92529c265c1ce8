"""The one place a Twilio-signed request is read and verified (SMS, status callbacks, voice).

The signature covers the URL as Twilio called it (behind a proxy: the public
one, with our query) and every POST parameter, so the form is read whole and
checked before any field of it is interpreted: an unsigned request learns
nothing about what we would accept, and nothing is stored for it.
"""

from __future__ import annotations

import logging

from aiohttp import web

from channels.sms import signature
from channels.sms.config import SmsConfig
from hub.web.errors import error_response

log = logging.getLogger(__name__)


class Refused(Exception):
    """The request is not Twilio's; `response` is the 403 to send."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.text)
        self.response = response


async def signed_form(request: web.Request, sms: SmsConfig, what: str) -> dict[str, str]:
    """The request's POST parameters, once their signature is checked; else `Refused`.

    `what` names the webhook in the log line ("SMS webhook", "SMS status callback").
    """
    # aiohttp refuses a body over server.max_body_bytes here (413 via the error middleware).
    form = await request.post()
    params = {k: v for k, v in form.items() if isinstance(v, str)}
    url = signature.public_url(
        sms.public_url, request.path_qs, request.headers, trust_proxy=sms.trust_proxy
    )
    detail = signature.refusal(sms.auth_token, url, params, request.headers)
    if detail is None:
        return params
    if not sms.auth_token:
        log.warning("%s refused: %s", what, detail)
    # The URL we checked is the most common cause of a mismatch behind a proxy.
    log.info("%s refused (%s); checked URL %s", what, detail, url)
    raise Refused(error_response(403, detail))
