"""The generic PBX webhook: JSON and form bodies as PBX scripts post them, the token, the answer."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest
from pydantic import SecretStr

from channels.base import CallCause, CallEvent, CallEventKind, CallProvider, Direction
from channels.voice.config import PbxConfig
from channels.voice.errors import CallAuthRefused, InvalidCallForm
from channels.voice.pbx import answer_json, authenticate, is_blocked, number_key, parse_request

AT = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
CONFIG = PbxConfig(
    enabled=True,
    token=SecretStr("cti-token-1"),
    block_list=["+49 30 1234567", "anonymous"],
)


def as_json(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()


def test_a_json_new_call_rings_the_listed_users() -> None:
    data = {
        "event": "newCall",
        "from": "0049 171 5550001",
        "to": "030 5550100",
        "direction": "in",
        "callId": "1733392800.42",
        "user": ["201", "202"],
        "queue": "sales",
    }
    assert parse_request(as_json(data), "application/json; charset=utf-8", received_at=AT) == (
        CallEvent(
            provider=CallProvider.PBX,
            call_id="1733392800.42",
            kind=CallEventKind.NEW_CALL,
            from_number="0049 171 5550001",
            to_number="030 5550100",
            direction=Direction.IN,
            users=("201", "202"),
            occurred_at=AT,
            queue="sales",
            metadata=data,
        )
    )


def test_a_form_new_call_with_one_user_and_numbers_as_json_numbers() -> None:
    form = urlencode({"event": "newCall", "from": "+4917155500001", "callId": "7", "user": "201"})
    event = parse_request(form.encode(), FORM)
    assert (event.call_id, event.from_number, event.users) == ("7", "+4917155500001", ("201",))
    numeric = parse_request(as_json({"event": "newCall", "callId": 4711, "user": 201}), JSON)
    assert (numeric.call_id, numeric.users) == ("4711", ("201",))


def test_repeated_form_users_in_either_spelling() -> None:
    raw = b"event=newCall&callId=8&user=201&user%5B%5D=202&user=201"
    assert parse_request(raw, FORM).users == ("201", "202")


@pytest.mark.parametrize(
    ("data", "answered_by"),
    [
        ({"user": "201", "answeringNumber": "+49305550201"}, "201"),
        ({"answeringNumber": "+49305550201"}, "+49305550201"),
        ({"user": ["203"]}, "203"),
        ({}, None),
    ],
)
def test_answer_names_the_user_else_the_answering_number(
    data: dict[str, Any], answered_by: str | None
) -> None:
    event = parse_request(as_json({"event": "answer", "callId": "9", **data}), JSON)
    assert (event.kind, event.answered_by, event.users) == (CallEventKind.ANSWER, answered_by, ())


@pytest.mark.parametrize(
    ("word", "cause"),
    [
        ("normalClearing", CallCause.NORMAL),
        ("completed", CallCause.NORMAL),
        ("BUSY", CallCause.BUSY),
        ("cancel", CallCause.CANCEL),
        ("cancelled", CallCause.CANCEL),
        ("noAnswer", CallCause.NO_ANSWER),
        ("no-answer", CallCause.NO_ANSWER),
        ("NO_ANSWER", CallCause.NO_ANSWER),
        ("congestion", CallCause.CONGESTION),
        ("notFound", CallCause.NOT_FOUND),
        ("forwarded", CallCause.FORWARDED),
        ("failed", CallCause.FAILED),
        ("zombie", CallCause.OTHER),
        ("", CallCause.OTHER),
    ],
)
def test_hangup_causes_in_any_spelling(word: str, cause: CallCause) -> None:
    event = parse_request(as_json({"event": "hangup", "callId": "9", "cause": word}), JSON)
    assert (event.kind, event.cause) == (CallEventKind.HANGUP, cause)


def test_event_and_direction_words_ignore_case_and_out_is_out() -> None:
    event = parse_request(as_json({"event": "NEWCALL", "callId": "1", "direction": "OUT"}), JSON)
    assert (event.kind, event.direction) == (CallEventKind.NEW_CALL, Direction.OUT)


@pytest.mark.parametrize(
    ("raw", "content_type", "reason"),
    [
        (b"{}", "text/plain", f"content type must be {JSON} or {FORM}"),
        (b"{", JSON, "body is not valid JSON"),
        (b"\xff\xfe", JSON, "body is not valid JSON"),
        (b"[" * 50000, JSON, "body is not valid JSON"),
        (b"[1, 2]", JSON, "body must be a JSON object"),
        (b'{"callId": "1"}', JSON, "event is missing"),
        (b'{"event": "newCall"}', JSON, "callId is missing"),
        (
            b'{"event": "ring", "callId": "1"}',
            JSON,
            "event must be newCall, answer or hangup, not 'ring'",
        ),
        (
            b'{"event": "newCall", "callId": "1", "direction": "x"}',
            JSON,
            "direction must be in or out, not 'x'",
        ),
        (b'{"event": "newCall", "callId": {"a": 1}}', JSON, "callId must be a string"),
        (b'{"event": "newCall", "callId": true}', JSON, "callId must be a string"),
        (b'{"event": "newCall", "callId": 1.5}', JSON, "callId must be a string"),
        (b'{"event": "newCall", "callId": "1", "user": [{}]}', JSON, "user must be a string"),
        (
            b'{"event": "newCall", "callId": "1", "from": "+49\\n30"}',
            JSON,
            "from contains control characters",
        ),
        (
            b'{"event": "newCall", "callId": ' + b"9" * 300 + b"}",
            JSON,
            "callId is longer than 256 characters",
        ),
        (b"event=newCall", FORM, "callId is missing"),
        (
            b'{"event": "newCall", "callId": "1", "x": [{"y": "\\u0000"}]}',
            JSON,
            "body contains a NUL character",
        ),
        (b'{"event": "newCall", "callId": "1", "\\udc80": 1}', JSON, "body is not valid Unicode"),
        (b'{"event": "newCall", "callId": "1", "x": NaN}', JSON, "body is not valid JSON"),
        (b"event=newCall&callId=1&note=a%00b", FORM, "body contains a NUL character"),
    ],
)
def test_malformed_bodies_say_why(raw: bytes, content_type: str, reason: str) -> None:
    with pytest.raises(InvalidCallForm) as invalid:
        parse_request(raw, content_type)
    assert invalid.value.reason == reason


def test_the_right_token_passes() -> None:
    authenticate(CONFIG, "cti-token-1")


@pytest.mark.parametrize(
    ("config", "token", "status", "reason"),
    [
        (CONFIG, None, 401, "missing token"),
        (CONFIG, "", 401, "missing token"),
        (CONFIG, "cti-token-2", 403, "wrong token"),
        (CONFIG, "cti-token-1 ", 403, "wrong token"),
        (CONFIG, "ctï-token-1", 403, "wrong token"),
        (
            PbxConfig(enabled=True),
            "cti-token-1",
            403,
            "no token configured (CRMHUB_VOICE__PBX__TOKEN); every request is refused",
        ),
    ],
)
def test_missing_or_wrong_tokens_are_refused(
    config: PbxConfig, token: str | None, status: int, reason: str
) -> None:
    with pytest.raises(CallAuthRefused) as refused:
        authenticate(config, token)
    assert (refused.value.status, refused.value.reason) == (status, reason)


@pytest.mark.parametrize(
    "spelling",
    ["+49301234567", "0049 30 1234567", "030/1234567", "49301234567", "+49 (0)30 1234567"],
)
def test_a_blocked_number_in_any_spelling_is_rejected_as_busy(spelling: str) -> None:
    event = parse_request(as_json({"event": "newCall", "callId": "1", "from": spelling}), JSON)
    assert answer_json(event, CONFIG) == '{"action":"reject","reason":"busy"}'


def test_a_withheld_caller_on_the_block_list_is_rejected() -> None:
    assert is_blocked("Anonymous", CONFIG.block_list, "DE")


@pytest.mark.parametrize(
    "data",
    [
        {"event": "newCall", "callId": "1", "from": "+49301234568"},
        {"event": "newCall", "callId": "1", "from": ""},
        # Only an inbound new call is refused; what follows or goes out is not.
        {"event": "newCall", "callId": "1", "from": "+49301234567", "direction": "out"},
        {"event": "answer", "callId": "1", "from": "+49301234567"},
        {"event": "hangup", "callId": "1", "from": "+49301234567"},
    ],
)
def test_everything_else_goes_on(data: dict[str, str]) -> None:
    assert answer_json(parse_request(as_json(data), JSON), CONFIG) == "{}"


def test_number_keys() -> None:
    assert number_key("0049 30 1234567", "DE") == "+49301234567"
    assert number_key("not a number", "DE") == "not a number"
