"""Twilio's SMS webhooks: the inbound message and the delivery status callback.

Order matters: the signature is checked before any field of the form is
interpreted, so an unsigned request learns nothing about what we would
accept, and nothing is stored for it. The inbound answer (TwiML) is rendered
only after the ingest commit, from the reply stored with the interaction, so
a retried or concurrent duplicate gets the very same TwiML.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from channels.base import (
    WebhookAnswer,
    WebhookFields,
    WebhookParsed,
    WebhookRejected,
    WebhookRequest,
)
from channels.sms import signature
from channels.sms.config import SmsConfig
from channels.sms.inbound import MAX_MEDIA, BodyTooLong, InvalidSmsForm, parse_inbound, twiml
from channels.sms.outbound import STATUS_CALLBACK_PATH
from channels.sms.status import MAX_OUTBOX_ID, InvalidStatusForm, parse_status

log = logging.getLogger(__name__)

INBOUND_PATH = "/webhooks/twilio/sms"
FORM_TYPE = "application/x-www-form-urlencoded"

_TEXT: dict[str, str] = {"type": "string"}
# The fields we read of what Twilio posts (it posts more; they are kept as metadata).
INBOUND_FIELDS = WebhookFields(
    form={
        "MessageSid": _TEXT,
        "From": _TEXT,
        "To": _TEXT,
        "Body": _TEXT,
        "NumMedia": {"type": "string", "pattern": f"^([0-9]|{MAX_MEDIA})$"},
        "MediaUrl0": _TEXT,
        "MediaContentType0": _TEXT,
    },
    required=("MessageSid", "From"),
)
STATUS_FIELDS = WebhookFields(
    form={"MessageSid": _TEXT, "MessageStatus": _TEXT, "ErrorCode": _TEXT},
    required=("MessageSid", "MessageStatus"),
    query={"outbox": {"type": "integer", "minimum": 1, "maximum": MAX_OUTBOX_ID}},
)


def verified_form(config: SmsConfig, request: WebhookRequest, what: str) -> dict[str, str]:
    """The POST parameters once the request is known to be Twilio's; else 404/403.

    Every Twilio-signed webhook (SMS, its status callback, voice) checks here,
    so each refuses for the same reasons in the same words. `what` names the
    webhook in the log.
    """
    if not config.enabled:
        raise WebhookRejected(404, "the SMS channel is not enabled")
    params = dict(request.form)
    url = signature.public_url(
        config.public_url, request.path_qs, request.headers, trust_proxy=config.trust_proxy
    )
    detail = signature.refusal(config.auth_token, url, params, request.headers)
    if detail is None:
        return params
    if not config.auth_token:
        log.warning("%s refused: %s", what, detail)
    # The URL we checked is the most common cause of a mismatch behind a proxy.
    log.info("%s refused (%s); checked URL %s", what, detail, url)
    raise WebhookRejected(403, detail)


@dataclass(frozen=True, slots=True)
class InboundSmsWebhook:
    config: SmsConfig
    path: str = INBOUND_PATH
    summary: str = "Twilio inbound SMS webhook (form, X-Twilio-Signature); answers TwiML"
    fields: WebhookFields = INBOUND_FIELDS

    def parse(self, request: WebhookRequest) -> WebhookParsed:
        if not self.config.enabled:
            raise WebhookRejected(404, "the SMS channel is not enabled")
        if request.content_type != FORM_TYPE:
            raise WebhookRejected(415, f"expected {FORM_TYPE}")
        params = verified_form(self.config, request, "SMS webhook")
        try:
            contact = parse_inbound(params, max_body_chars=self.config.max_body_chars)
        except BodyTooLong as exc:
            raise WebhookRejected(413, str(exc)) from exc
        except InvalidSmsForm as exc:
            raise WebhookRejected(400, str(exc)) from exc
        return WebhookParsed(contacts=(contact,))

    def answer(self, replies: Sequence[str | None]) -> WebhookAnswer:
        return WebhookAnswer(200, twiml(replies[0] if replies else None), "text/xml")


@dataclass(frozen=True, slots=True)
class SmsStatusWebhook:
    """Twilio's delivery status callbacks. A report for a message we do not know
    is still answered 2xx by the hub: an error would make Twilio retry a report
    that can never match."""

    config: SmsConfig
    path: str = STATUS_CALLBACK_PATH
    summary: str = "Twilio delivery status callback (form, X-Twilio-Signature); 204"
    fields: WebhookFields = STATUS_FIELDS

    def parse(self, request: WebhookRequest) -> WebhookParsed:
        params = verified_form(self.config, request, "SMS status callback")
        try:
            return WebhookParsed(reports=(parse_status(params, request.query),))
        except InvalidStatusForm as exc:
            raise WebhookRejected(400, str(exc)) from exc

    def answer(self, replies: Sequence[str | None]) -> WebhookAnswer:
        return WebhookAnswer(204)


def sms_webhooks(config: SmsConfig) -> tuple[InboundSmsWebhook, SmsStatusWebhook]:
    return InboundSmsWebhook(config), SmsStatusWebhook(config)
