"""The telephony webhooks on the registry's contract: verify, parse to `CallEvent`s.

Credentials are checked before any field is read (channels/voice/auth.py,
Twilio's signature through channels/sms/signature.py), so a refused request
stores nothing. The hub acknowledges only after the call's state is
committed; the answer tells the provider what to do next (TwiML that rings
the agents assignment chose, sipgate's answer/hangup callbacks, a PBX reject).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote

from channels.base import (
    WebhookAnswer,
    WebhookFields,
    WebhookParsed,
    WebhookRejected,
    WebhookRequest,
)
from channels.voice import pbx, sipgate, twilio_voice
from channels.voice.config import VoiceConfig
from channels.voice.errors import CallAuthRefused, InvalidCallForm

TWILIO_VOICE_PATH = "/webhooks/twilio/voice"
TWILIO_STATUS_PATH = "/webhooks/twilio/voice/status"
SIPGATE_PATH = "/webhooks/sipgate"
PBX_PATH = "/webhooks/cti/{token}"
PBX_PREFIX = "/webhooks/cti/"
FORM_TYPE = "application/x-www-form-urlencoded"
XML_TYPE = "application/xml"
JSON_TYPE = "application/json"

_TEXT: dict[str, str] = {"type": "string"}
# The fields each webhook reads (providers post more; kept as the call's metadata).
TWILIO_VOICE_FIELDS = WebhookFields(
    form={"CallSid": _TEXT, "From": _TEXT, "To": _TEXT, "Direction": _TEXT, "CallStatus": _TEXT},
    required=("CallSid",),
)
TWILIO_STATUS_FIELDS = WebhookFields(
    form={
        "CallSid": _TEXT,
        "ParentCallSid": _TEXT,
        "CallStatus": _TEXT,
        "From": _TEXT,
        "To": _TEXT,
        "Direction": _TEXT,
        "CallDuration": _TEXT,
    },
    required=("CallSid", "CallStatus"),
)
SIPGATE_FIELDS = WebhookFields(
    form={
        "event": {"type": "string", "enum": ["newCall", "answer", "hangup"]},
        "callId": _TEXT,
        "from": _TEXT,
        "to": _TEXT,
        "direction": _TEXT,
        "user[]": _TEXT,
        "userId[]": _TEXT,
        "answeringNumber": _TEXT,
        "cause": _TEXT,
    },
    required=("event", "callId"),
    query={"token": _TEXT},
)
PBX_FIELDS = WebhookFields(
    form={
        "event": {"type": "string", "enum": ["newCall", "answer", "hangup"]},
        "callId": _TEXT,
        "from": _TEXT,
        "to": _TEXT,
        "direction": {"type": "string", "enum": ["in", "out"]},
        "user": _TEXT,
        "queue": _TEXT,
        "cause": _TEXT,
        "answeringNumber": _TEXT,
    },
    required=("event", "callId"),
)


def _not_enabled(what: str) -> WebhookRejected:
    return WebhookRejected(404, f"voice.{what} is not enabled")


def _refused(exc: CallAuthRefused | InvalidCallForm) -> WebhookRejected:
    if isinstance(exc, CallAuthRefused):
        return WebhookRejected(exc.status, exc.reason)
    return WebhookRejected(400, exc.reason)


def _twilio_form(config: VoiceConfig, request: WebhookRequest) -> dict[str, str]:
    if not config.twilio.enabled:
        raise _not_enabled("twilio")
    if request.content_type != FORM_TYPE:
        raise WebhookRejected(415, f"expected {FORM_TYPE}")
    form = dict(request.form)
    try:
        twilio_voice.verify(
            config.twilio.auth_token.get_secret_value(),
            config.public_url,
            request.path_qs,
            form,
            request.headers,
            trust_proxy=config.twilio.trust_proxy,
        )
    except CallAuthRefused as exc:
        raise _refused(exc) from exc
    return form


@dataclass(frozen=True, slots=True)
class TwilioVoiceWebhook:
    config: VoiceConfig
    path: str = TWILIO_VOICE_PATH
    summary: str = "Twilio Voice incoming call (form, X-Twilio-Signature); answers TwiML <Dial>"
    fields: WebhookFields = TWILIO_VOICE_FIELDS

    def parse(self, request: WebhookRequest) -> WebhookParsed:
        form = _twilio_form(self.config, request)
        try:
            event = twilio_voice.parse_voice(form)
        except InvalidCallForm as exc:
            raise _refused(exc) from exc
        return WebhookParsed(calls=(event,))

    def answer(self, replies: Sequence[str | None]) -> WebhookAnswer:
        # The hub's reply: the dial targets assignment chose, one a line.
        reply = (replies[0] if replies else None) or ""
        targets = [t for t in reply.splitlines() if t]
        if not targets:
            return WebhookAnswer(200, twilio_voice.hangup_twiml(), "text/xml")
        twiml = twilio_voice.dial_twiml(
            targets,
            self.config.public_url.rstrip("/") + TWILIO_STATUS_PATH,
            timeout=self.config.twilio.dial_timeout,
            caller_id=self.config.twilio.caller_id,
        )
        return WebhookAnswer(200, twiml, "text/xml")


@dataclass(frozen=True, slots=True)
class TwilioVoiceStatusWebhook:
    config: VoiceConfig
    path: str = TWILIO_STATUS_PATH
    summary: str = "Twilio Voice status callback, call and agent legs (form, signed); 204"
    fields: WebhookFields = TWILIO_STATUS_FIELDS

    def parse(self, request: WebhookRequest) -> WebhookParsed:
        form = _twilio_form(self.config, request)
        try:
            event = twilio_voice.parse_status(form)
        except InvalidCallForm as exc:
            raise _refused(exc) from exc
        return WebhookParsed(calls=(event,) if event is not None else ())

    def answer(self, replies: Sequence[str | None]) -> WebhookAnswer:
        return WebhookAnswer(204)


@dataclass(frozen=True, slots=True)
class SipgateWebhook:
    config: VoiceConfig
    path: str = SIPGATE_PATH
    summary: str = "sipgate.io push (form: newCall, answer, hangup; Basic or ?token=)"
    fields: WebhookFields = SIPGATE_FIELDS

    def parse(self, request: WebhookRequest) -> WebhookParsed:
        config = self.config.sipgate
        if not config.enabled:
            raise _not_enabled("sipgate")
        try:
            sipgate.authenticate(
                config, request.headers.get("Authorization"), request.query.get("token")
            )
            if request.content_type != FORM_TYPE:
                raise InvalidCallForm(f"content type must be {FORM_TYPE}")
            event = sipgate.parse_push(request.body)
        except (CallAuthRefused, InvalidCallForm) as exc:
            raise _refused(exc) from exc
        # Ask for the answer and hangup pushes of this call, at the URL it came to.
        url = self.config.public_url.rstrip("/") + SIPGATE_PATH
        if config.auth == "token":
            url += "?token=" + quote(config.token.get_secret_value(), safe="")
        xml = sipgate.answer_xml(url, url)
        return WebhookParsed(calls=(event,), answer=WebhookAnswer(200, xml, XML_TYPE))

    def answer(self, replies: Sequence[str | None]) -> WebhookAnswer:
        return WebhookAnswer(200, "", XML_TYPE)


@dataclass(frozen=True, slots=True)
class PbxWebhook:
    config: VoiceConfig
    path: str = PBX_PATH
    summary: str = "Generic PBX call event (JSON or form; token in the path); answers {}"
    fields: WebhookFields = PBX_FIELDS

    def parse(self, request: WebhookRequest) -> WebhookParsed:
        config = self.config.pbx
        if not config.enabled:
            raise _not_enabled("pbx")
        path = request.path_qs.split("?", 1)[0]
        token = unquote(path[len(PBX_PREFIX) :]) if path.startswith(PBX_PREFIX) else None
        try:
            pbx.authenticate(config, token)
            event = pbx.parse_request(request.body, request.content_type)
        except (CallAuthRefused, InvalidCallForm) as exc:
            raise _refused(exc) from exc
        answer = WebhookAnswer(200, pbx.answer_json(event, config), JSON_TYPE)
        return WebhookParsed(calls=(event,), answer=answer)

    def answer(self, replies: Sequence[str | None]) -> WebhookAnswer:
        return WebhookAnswer(200, "{}", JSON_TYPE)


def voice_webhooks(
    config: VoiceConfig,
) -> tuple[TwilioVoiceWebhook, TwilioVoiceStatusWebhook, SipgateWebhook, PbxWebhook]:
    return (
        TwilioVoiceWebhook(config),
        TwilioVoiceStatusWebhook(config),
        SipgateWebhook(config),
        PbxWebhook(config),
    )
