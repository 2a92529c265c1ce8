"""sipgate.io's push API: form-encoded newCall / answer / hangup -> `CallEvent`, and its XML answer.

sipgate posts `application/x-www-form-urlencoded` bodies and repeats the
keys of lists (`user[]=Alice&user[]=Bob`), so this reads the raw body, not a
collapsed mapping. Numbers come as sipgate sends them: international without
"+" ("4930…") or "anonymous" for a withheld caller; the hub normalises them.

Agents are named by their sipgate user id (`userId[]` on newCall, `userId`
on answer, e.g. "w0"): a stable id, unlike the display names in `user[]`,
which are the fallback when no id is sent. A call answered by the voicemail
comes as answer with `user=voicemail`, and is kept as sipgate says it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from xml.sax.saxutils import escape

from channels.base import CallCause, CallEvent, CallEventKind, CallProvider, Direction
from channels.voice.auth import check_basic, check_token
from channels.voice.config import (
    SIPGATE_PASSWORD_VARIABLE,
    SIPGATE_TOKEN_VARIABLE,
    SipgateConfig,
)
from channels.voice.errors import InvalidCallForm
from channels.voice.forms import Pairs, decode_form, every, first, raw_metadata, required

PATH = "/webhooks/sipgate"
CONTENT_TYPE = "application/xml"
EVENTS: Mapping[str, CallEventKind] = {
    "newCall": CallEventKind.NEW_CALL,
    "answer": CallEventKind.ANSWER,
    "hangup": CallEventKind.HANGUP,
}
# Every hangup cause sipgate documents.
CAUSES: Mapping[str, CallCause] = {
    "normalClearing": CallCause.NORMAL,
    "busy": CallCause.BUSY,
    "cancel": CallCause.CANCEL,
    "noAnswer": CallCause.NO_ANSWER,
    "congestion": CallCause.CONGESTION,
    "notFound": CallCause.NOT_FOUND,
    "forwarded": CallCause.FORWARDED,
}
DIRECTIONS: Mapping[str, Direction] = {"in": Direction.IN, "out": Direction.OUT}


def authenticate(config: SipgateConfig, authorization: str | None, token: str | None) -> None:
    """Raise `CallAuthRefused` unless the push carries the configured credentials.

    `authorization` is the Authorization header, `token` the secret from our
    URL (path or query); which one counts is `config.auth`.
    """
    if config.auth == "token":
        check_token(token, config.token.get_secret_value(), variable=SIPGATE_TOKEN_VARIABLE)
    else:
        check_basic(
            authorization,
            config.user,
            config.password.get_secret_value(),
            variable=SIPGATE_PASSWORD_VARIABLE,
        )


def _direction(pairs: Pairs) -> Direction:
    raw = first(pairs, "direction")
    if not raw:
        return Direction.IN
    if raw not in DIRECTIONS:
        raise InvalidCallForm(f"direction must be in or out, not {raw[:40]!r}")
    return DIRECTIONS[raw]


def _ringing_users(pairs: Pairs) -> tuple[str, ...]:
    return every(pairs, "userId[]") or every(pairs, "user[]")


def _answering_user(pairs: Pairs) -> str | None:
    return first(pairs, "userId") or first(pairs, "user") or first(pairs, "answeringNumber") or None


def parse_push(body: bytes, *, received_at: datetime | None = None) -> CallEvent:
    """One push (after `authenticate`); raises only `InvalidCallForm`."""
    pairs = decode_form(body)
    event = required(pairs, "event")
    if event not in EVENTS:
        raise InvalidCallForm(f"event must be one of {', '.join(EVENTS)}, not {event[:40]!r}")
    kind = EVENTS[event]
    cause: CallCause | None = None
    if kind is CallEventKind.HANGUP:
        raw_cause = first(pairs, "cause")
        # A cause sipgate adds later must not lose the hangup: OTHER, the word in metadata.
        cause = CAUSES.get(raw_cause, CallCause.OTHER) if raw_cause else CallCause.OTHER
    return CallEvent(
        provider=CallProvider.SIPGATE,
        call_id=required(pairs, "callId"),
        kind=kind,
        from_number=first(pairs, "from"),
        to_number=first(pairs, "to"),
        direction=_direction(pairs),
        users=_ringing_users(pairs) if kind is CallEventKind.NEW_CALL else (),
        answered_by=_answering_user(pairs) if kind is CallEventKind.ANSWER else None,
        cause=cause,
        occurred_at=received_at or datetime.now(UTC),
        metadata=raw_metadata(pairs),
    )


def _attribute(value: str) -> str:
    if not value.isprintable():
        raise ValueError(f"not a URL for sipgate: {value!r}")
    return escape(value, {'"': "&quot;"})


def answer_xml(on_answer: str, on_hangup: str) -> str:
    """The answer to newCall asking sipgate to push answer and hangup for this call too."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<Response onAnswer="{_attribute(on_answer)}" onHangup="{_attribute(on_hangup)}"/>'
    )
