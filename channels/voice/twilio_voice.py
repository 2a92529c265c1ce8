"""Twilio Voice: the incoming-call webhook and status callbacks -> `CallEvent`s, and TwiML.

Twilio signs voice webhooks exactly as SMS ones, so the check is
channels/sms/signature.py's, run before any field is read.

How a call looks from here (decisions the hub relies on):

- `POST /webhooks/twilio/voice` is the call arriving (NEW_CALL). The hub
  answers with `dial_twiml`, ringing the chosen agents. When that TwiML has a
  Dial `action` pointing back at the same URL, Twilio posts again when the
  dial ends, with `DialCallStatus`: that request is the HANGUP.
- Status callbacks come for the call itself (configured on the number, or
  on an outbound API call) and for each agent's leg (the `statusCallback`
  on every `<Client>` / `<Number>` we render). A leg carries `ParentCallSid`;
  its events are keyed by the parent, so one call is one call, and its `To`
  names the agent: ringing -> NEW_CALL at that agent, in-progress -> ANSWER
  by that agent, completed -> HANGUP. A leg that was not taken (busy,
  no-answer, canceled, failed) is no event: in a ring-all the call goes on.
- An inbound call's own "in-progress" means Twilio picked up to run our
  TwiML, not that an agent did, so it is NEW_CALL; for an outbound call it is
  the callee answering (ANSWER).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from twilio.twiml.voice_response import VoiceResponse

from channels.base import (
    CALL_DURATION_KEY,
    CallCause,
    CallEvent,
    CallEventKind,
    CallProvider,
    Direction,
)
from channels.sms import signature
from channels.voice.config import TWILIO_TOKEN_VARIABLE
from channels.voice.errors import CallAuthRefused, InvalidCallForm
from channels.voice.forms import Pairs, first, pairs_of, required, storable

VOICE_PATH = "/webhooks/twilio/voice"
STATUS_PATH = "/webhooks/twilio/voice/status"
# How Twilio spells a Voice SDK client in From / To, and how we name one to dial.
CLIENT_PREFIX = "client:"
# The leg events we ask Twilio to report for every agent we ring.
LEG_EVENTS = "initiated ringing answered completed"

_STARTED = frozenset({"queued", "initiated", "ringing"})
_ENDED: Mapping[str, CallCause] = {
    "completed": CallCause.NORMAL,
    "answered": CallCause.NORMAL,  # DialCallStatus only: bridged, then ended
    "busy": CallCause.BUSY,
    "no-answer": CallCause.NO_ANSWER,
    "failed": CallCause.FAILED,
    "canceled": CallCause.CANCEL,
}
_DIRECTIONS: Mapping[str, Direction] = {
    "inbound": Direction.IN,
    "outbound-api": Direction.OUT,
    "outbound-dial": Direction.OUT,
}
# Ten digits of seconds is over 300 years: anything longer is not a duration.
_MAX_DURATION_DIGITS = 10


def verify(
    auth_token: str,
    public_base: str,
    path_qs: str,
    form: Mapping[str, str],
    headers: Mapping[str, str],
    *,
    trust_proxy: bool = False,
) -> None:
    """Return when the request is Twilio's; else raise `CallAuthRefused` (403) with the reason."""
    if not auth_token:
        raise CallAuthRefused(
            403,
            f"no Twilio auth token configured ({TWILIO_TOKEN_VARIABLE}); nothing can be verified",
        )
    try:
        url = signature.public_url(public_base, path_qs, headers, trust_proxy=trust_proxy)
        # Twilio's validator encodes URL and parameters as UTF-8; a lone surrogate
        # (undecodable bytes) cannot be in anything Twilio signed.
        for text in (url, *form.keys(), *form.values()):
            text.encode("utf-8")
        reason = signature.refusal(auth_token, url, form, headers)
    except (UnicodeError, ValueError, TypeError, AttributeError):
        reason = f"{signature.SIGNATURE_HEADER} does not match"
    if reason is not None:
        raise CallAuthRefused(403, reason)


def _agent(raw: str) -> str:
    """A leg's `To` as the agent's id: a client's identity without "client:", or a number."""
    return raw[len(CLIENT_PREFIX) :] if raw.startswith(CLIENT_PREFIX) else raw


def _direction(pairs: Pairs) -> Direction:
    raw = first(pairs, "Direction")
    if not raw:
        return Direction.IN
    if raw not in _DIRECTIONS:
        raise InvalidCallForm(f"Direction must be one of {', '.join(_DIRECTIONS)}, not {raw!r}")
    return _DIRECTIONS[raw]


def _metadata(form: Mapping[str, str], pairs: Pairs) -> dict[str, object]:
    for key, value in pairs:
        storable(key)
        storable(value)
    meta: dict[str, object] = dict(form)
    raw = first(pairs, "CallDuration") or first(pairs, "DialCallDuration")
    if raw:
        if not (raw.isascii() and raw.isdigit()) or len(raw) > _MAX_DURATION_DIGITS:
            raise InvalidCallForm(f"CallDuration must be a number of seconds, not {raw[:40]!r}")
        meta[CALL_DURATION_KEY] = int(raw)
    return meta


def _event(
    pairs: Pairs,
    form: Mapping[str, str],
    received_at: datetime | None,
    *,
    call_id: str,
    kind: CallEventKind,
    direction: Direction = Direction.IN,
    users: tuple[str, ...] = (),
    answered_by: str | None = None,
    cause: CallCause | None = None,
    leg: bool = False,
) -> CallEvent:
    return CallEvent(
        provider=CallProvider.TWILIO,
        call_id=call_id,
        kind=kind,
        from_number=first(pairs, "From"),
        # A leg's To is the agent, not the number the caller dialled.
        to_number="" if leg else first(pairs, "To"),
        direction=direction,
        users=users,
        answered_by=answered_by,
        cause=cause,
        occurred_at=received_at or datetime.now(UTC),
        metadata=_metadata(form, pairs),
    )


def parse_voice(form: Mapping[str, str], *, received_at: datetime | None = None) -> CallEvent:
    """The incoming-call webhook: NEW_CALL; or, with DialCallStatus (the Dial's action), HANGUP."""
    pairs = pairs_of(form)
    call_id = required(pairs, "CallSid")
    direction = _direction(pairs)
    dial_status = first(pairs, "DialCallStatus").lower()
    if not dial_status:
        return _event(
            pairs,
            form,
            received_at,
            call_id=call_id,
            kind=CallEventKind.NEW_CALL,
            direction=direction,
        )
    if dial_status not in _ENDED:
        raise InvalidCallForm(f"DialCallStatus {dial_status[:40]!r} is not one Twilio sends")
    return _event(
        pairs,
        form,
        received_at,
        call_id=call_id,
        kind=CallEventKind.HANGUP,
        direction=direction,
        cause=_ENDED[dial_status],
    )


def parse_status(
    form: Mapping[str, str], *, received_at: datetime | None = None
) -> CallEvent | None:
    """A status callback: the call's own, or one agent leg's (None: a leg nobody took)."""
    pairs = pairs_of(form)
    sid = required(pairs, "CallSid")
    status = required(pairs, "CallStatus").lower()
    # "answered" is a DialCallStatus word, never a CallStatus.
    if status == "answered" or not (
        status in _STARTED or status == "in-progress" or status in _ENDED
    ):
        raise InvalidCallForm(f"CallStatus {status[:40]!r} is not one Twilio sends")
    parent = first(pairs, "ParentCallSid")
    if parent:
        return _leg_event(pairs, form, received_at, parent, status)
    direction = _direction(pairs)
    if status in _STARTED or (status == "in-progress" and direction is Direction.IN):
        kind, cause = CallEventKind.NEW_CALL, None
    elif status == "in-progress":
        kind, cause = CallEventKind.ANSWER, None
    else:
        kind, cause = CallEventKind.HANGUP, _ENDED[status]
    return _event(
        pairs, form, received_at, call_id=sid, kind=kind, direction=direction, cause=cause
    )


def _leg_event(
    pairs: Pairs, form: Mapping[str, str], received_at: datetime | None, parent: str, status: str
) -> CallEvent | None:
    agent = _agent(required(pairs, "To"))
    if not agent:
        raise InvalidCallForm("To names no agent")
    # Our Dial rings agents for inbound calls; the leg itself is always "outbound-dial".
    users: tuple[str, ...]
    if status in _STARTED:
        kind, users, answered_by, cause = CallEventKind.NEW_CALL, (agent,), None, None
    elif status == "in-progress":
        kind, users, answered_by, cause = CallEventKind.ANSWER, (), agent, None
    elif status == "completed":
        kind, users, answered_by, cause = CallEventKind.HANGUP, (), agent, CallCause.NORMAL
    else:
        return None
    return _event(
        pairs,
        form,
        received_at,
        call_id=parent,
        kind=kind,
        users=users,
        answered_by=answered_by,
        cause=cause,
        leg=True,
    )


def _target(raw: str) -> str:
    value = raw.strip()
    if not value or not value.isprintable():
        raise ValueError(f"not a dial target: {raw!r}")
    return value


def dial_twiml(
    targets: Sequence[str],
    status_callback: str,
    *,
    timeout: int = 20,
    caller_id: str = "",
    action: str | None = None,
) -> str:
    """TwiML ringing every target at once: "client:<identity>" -> <Client>, else a <Number>.

    Each leg reports to `status_callback`, so the hub learns who rang and who
    answered; `action` (when given) is posted when the dial ends.
    """
    if not targets:
        raise ValueError("dial_twiml needs at least one target")
    response = VoiceResponse()
    dial = response.dial(
        action=_target(action) if action else None,
        timeout=timeout,
        caller_id=_target(caller_id) if caller_id else None,
    )
    callback = _target(status_callback)
    for raw in targets:
        target = _target(raw)
        leg = {
            "status_callback": callback,
            "status_callback_event": LEG_EVENTS,
            "status_callback_method": "POST",
        }
        if target.startswith(CLIENT_PREFIX):
            dial.client(_target(target[len(CLIENT_PREFIX) :]), **leg)
        else:
            dial.number(target, **leg)
    return str(response.to_xml(xml_declaration=True))


def hangup_twiml() -> str:
    """The answer when nobody can take the call (or after the dial ended)."""
    response = VoiceResponse()
    response.hangup()
    return str(response.to_xml(xml_declaration=True))


def reject_twiml() -> str:
    """Refuse a call unanswered, as busy (a blocked number); Twilio bills nothing for it."""
    response = VoiceResponse()
    response.reject(reason="busy")
    return str(response.to_xml(xml_declaration=True))
