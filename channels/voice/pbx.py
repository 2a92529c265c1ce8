"""The generic PBX webhook (`POST /webhooks/cti/{token}`): JSON or form -> `CallEvent`.

The field names are the ones PBX scripts already send to other CRMs: event
(newCall | answer | hangup), from, to, direction (in | out), callId, user (a
string or a list), queue, cause, answeringNumber. Scripts differ in details,
so this is lenient where meaning is clear (a numeric callId, `user[]` for
`user`, any case and spelling of a cause) and strict where it is not (an
unknown event, a nested object where a number belongs).

The answer tells the PBX what to do with a new call: `{}` to go on, or
`{"action":"reject","reason":"busy"}` for a caller on the block list.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import phonenumbers

from channels.base import CallCause, CallEvent, CallEventKind, CallProvider, Direction
from channels.voice.auth import check_token
from channels.voice.config import PBX_TOKEN_VARIABLE, PbxConfig
from channels.voice.errors import InvalidCallForm
from channels.voice.forms import (
    MAX_BODY_BYTES,
    MAX_FIELDS,
    Pairs,
    decode_form,
    every,
    first,
    raw_metadata,
    required,
    storable,
)

PATH = "/webhooks/cti/{token}"
JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"
EVENTS: Mapping[str, CallEventKind] = {
    "newcall": CallEventKind.NEW_CALL,
    "answer": CallEventKind.ANSWER,
    "hangup": CallEventKind.HANGUP,
}
DIRECTIONS: Mapping[str, Direction] = {"in": Direction.IN, "out": Direction.OUT}
# Causes as PBX scripts spell them (sipgate's, Twilio's, Asterisk-ish), lower-case
# with "-", "_" and spaces removed.
CAUSES: Mapping[str, CallCause] = {
    "normal": CallCause.NORMAL,
    "normalclearing": CallCause.NORMAL,
    "completed": CallCause.NORMAL,
    "busy": CallCause.BUSY,
    "cancel": CallCause.CANCEL,
    "canceled": CallCause.CANCEL,
    "cancelled": CallCause.CANCEL,
    "noanswer": CallCause.NO_ANSWER,
    "congestion": CallCause.CONGESTION,
    "notfound": CallCause.NOT_FOUND,
    "forwarded": CallCause.FORWARDED,
    "failed": CallCause.FAILED,
}
# Fields read as text; a JSON number is accepted for them (scripts send callId 4711).
_SCALARS = ("event", "from", "to", "direction", "callId", "queue", "cause", "answeringNumber")
CONTINUE = "{}"
REJECT_BUSY = '{"action":"reject","reason":"busy"}'


def authenticate(config: PbxConfig, token: str | None) -> None:
    """Raise `CallAuthRefused` unless `token` (the URL's) is the configured one."""
    check_token(token, config.token.get_secret_value(), variable=PBX_TOKEN_VARIABLE)


def _text(name: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InvalidCallForm(f"{name} must be a string")


def _no_constant(word: str) -> None:
    raise ValueError(f"{word} is not JSON")


def _check_strings(data: Any) -> None:
    """Every key and string in the document is storable. JSON escapes can spell NUL
    and lone surrogates, and the metadata keeps the whole document; a stack, not
    recursion, since json allows nesting deeper than Python's stack would."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            storable(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _json_pairs(body: bytes) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    if len(body) > MAX_BODY_BYTES:
        raise InvalidCallForm(f"body has {len(body)} bytes; at most {MAX_BODY_BYTES} are accepted")
    try:
        # NaN and Infinity are no JSON, and no database's JSON column takes them.
        data = json.loads(body, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and bad UTF-8 are ValueErrors
        raise InvalidCallForm("body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise InvalidCallForm("body must be a JSON object")
    if len(data) > MAX_FIELDS:
        raise InvalidCallForm(f"body has more than {MAX_FIELDS} fields")
    _check_strings(data)
    pairs = [(name, _text(name, data[name])) for name in _SCALARS if data.get(name) is not None]
    users = data.get("user")
    if isinstance(users, list):
        pairs += [("user", _text("user", u)) for u in users if u is not None]
    elif users is not None:
        pairs.append(("user", _text("user", users)))
    return pairs, data


def _form_pairs(body: bytes) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    received = decode_form(body)
    # Some scripts write lists the PHP way; both spellings mean the same field.
    pairs = [("user" if key == "user[]" else key, value) for key, value in received]
    return pairs, raw_metadata(received)


def _cause(pairs: Pairs) -> CallCause:
    raw = first(pairs, "cause")
    key = re.sub(r"[-_ ]", "", raw.lower())
    return CAUSES.get(key, CallCause.OTHER)


def parse_request(
    body: bytes, content_type: str, *, received_at: datetime | None = None
) -> CallEvent:
    """One PBX event (after `authenticate`); raises only `InvalidCallForm`."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == JSON_TYPE:
        pairs, metadata = _json_pairs(body)
    elif media_type == FORM_TYPE:
        pairs, metadata = _form_pairs(body)
    else:
        raise InvalidCallForm(f"content type must be {JSON_TYPE} or {FORM_TYPE}")
    event = required(pairs, "event")
    kind = EVENTS.get(event.lower())
    if kind is None:
        raise InvalidCallForm(f"event must be newCall, answer or hangup, not {event[:40]!r}")
    direction_word = first(pairs, "direction").lower() or "in"
    if direction_word not in DIRECTIONS:
        raise InvalidCallForm(f"direction must be in or out, not {direction_word[:40]!r}")
    users = every(pairs, "user")
    answered_by = None
    if kind is CallEventKind.ANSWER:
        answered_by = (users[0] if users else "") or first(pairs, "answeringNumber") or None
    return CallEvent(
        provider=CallProvider.PBX,
        call_id=required(pairs, "callId"),
        kind=kind,
        from_number=first(pairs, "from"),
        to_number=first(pairs, "to"),
        direction=DIRECTIONS[direction_word],
        users=users if kind is CallEventKind.NEW_CALL else (),
        answered_by=answered_by,
        cause=_cause(pairs) if kind is CallEventKind.HANGUP else None,
        occurred_at=received_at or datetime.now(UTC),
        queue=first(pairs, "queue").strip()[:100],
        metadata=metadata,
    )


def number_key(raw: str, region: str) -> str:
    """A number in one spelling for comparing: E.164 when it parses, else its lower-case text.

    "0049 30 …", "+49 30 …" and "030 …" (in DE) give one key; "4930…" as
    sipgate and some PBXs send it (international without a prefix) too.
    """
    text = raw.strip()
    for candidate in (text, "+" + text if text.isdigit() and not text.startswith("0") else ""):
        if not candidate:
            continue
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
    return text.lower()


@functools.lru_cache(maxsize=16)
def _blocked_keys(block_list: tuple[str, ...], region: str) -> frozenset[str]:
    return frozenset(number_key(entry, region) for entry in block_list if entry.strip())


def is_blocked(number: str, block_list: Iterable[str], region: str) -> bool:
    blocked = _blocked_keys(tuple(block_list), region)
    if not blocked or not number.strip():
        return False  # no list: no number to parse (it costs more than the rest of the check)
    return number_key(number, region) in blocked


def answer_json(event: CallEvent, config: PbxConfig) -> str:
    """The webhook's answer: reject an inbound new call from a blocked number, else go on."""
    if (
        event.kind is CallEventKind.NEW_CALL
        and event.direction is Direction.IN
        and is_blocked(event.from_number, config.block_list, config.default_region)
    ):
        return REJECT_BUSY
    return CONTINUE
