"""sipgate.io push API: bodies as sipgate posts them, credentials as its client sends them."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest
from aiohttp import encode_basic_auth
from pydantic import SecretStr

from channels.base import CallCause, CallEvent, CallEventKind, CallProvider, Direction
from channels.voice.config import SipgateConfig
from channels.voice.errors import CallAuthRefused, InvalidCallForm
from channels.voice.sipgate import CAUSES, answer_xml, authenticate, parse_push

AT = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
PASSWORD = "s3cret:with colon ü"
BASIC = SipgateConfig(enabled=True, auth="basic", user="sipgate", password=SecretStr(PASSWORD))
TOKENED = SipgateConfig(enabled=True, auth="token", token=SecretStr("url-token-1"))

NEW_CALL = [
    ("event", "newCall"),
    ("direction", "in"),
    ("from", "4917155500001"),
    ("to", "49305550100"),
    ("callId", "7F1B2C3D4E5F"),
    ("origCallId", "7F1B2C3D4E5F"),
    ("user[]", "Alice Agent"),
    ("user[]", "Bob Agent"),
    ("userId[]", "w0"),
    ("userId[]", "w1"),
    ("fullUserId[]", "1234567w0"),
    ("fullUserId[]", "1234567w1"),
    ("xcid", "abc"),
    ("diversion", ""),
]


def body(pairs: list[tuple[str, str]]) -> bytes:
    """The form body sipgate posts: brackets of list keys percent-encoded."""
    return urlencode(pairs).encode()


def test_new_call_rings_every_listed_user_by_id() -> None:
    assert parse_push(body(NEW_CALL), received_at=AT) == CallEvent(
        provider=CallProvider.SIPGATE,
        call_id="7F1B2C3D4E5F",
        kind=CallEventKind.NEW_CALL,
        from_number="4917155500001",
        to_number="49305550100",
        direction=Direction.IN,
        users=("w0", "w1"),
        occurred_at=AT,
        metadata={
            "event": "newCall",
            "direction": "in",
            "from": "4917155500001",
            "to": "49305550100",
            "callId": "7F1B2C3D4E5F",
            "origCallId": "7F1B2C3D4E5F",
            "user[]": ["Alice Agent", "Bob Agent"],
            "userId[]": ["w0", "w1"],
            "fullUserId[]": ["1234567w0", "1234567w1"],
            "xcid": "abc",
            "diversion": "",
        },
    )


def test_without_user_ids_the_names_are_the_users() -> None:
    pairs = [(k, v) for k, v in NEW_CALL if k != "userId[]"]
    assert parse_push(body(pairs)).users == ("Alice Agent", "Bob Agent")


def test_a_single_user_is_a_list_of_one_and_an_outbound_call_is_out() -> None:
    pairs = [("event", "newCall"), ("direction", "out"), ("callId", "1"), ("user[]", "Alice")]
    pairs += [("userId[]", "w0"), ("from", "49305550100"), ("to", "anonymous")]
    event = parse_push(body(pairs))
    assert (event.users, event.direction, event.to_number) == (("w0",), Direction.OUT, "anonymous")


def test_answer_names_who_took_it() -> None:
    pairs = [("event", "answer"), ("callId", "7F1B2C3D4E5F"), ("direction", "in")]
    pairs += [("user", "Alice Agent"), ("userId", "w0"), ("fullUserId", "1234567w0")]
    pairs += [("from", "4917155500001"), ("to", "49305550100"), ("answeringNumber", "4930555")]
    event = parse_push(body(pairs), received_at=AT)
    assert (event.kind, event.call_id, event.answered_by, event.users, event.cause) == (
        CallEventKind.ANSWER,
        "7F1B2C3D4E5F",
        "w0",
        (),
        None,
    )


@pytest.mark.parametrize(
    ("fields", "answered_by"),
    [
        ([("user", "voicemail")], "voicemail"),
        ([("answeringNumber", "4930555")], "4930555"),
        ([], None),
    ],
)
def test_answer_falls_back_to_the_name_then_the_number(
    fields: list[tuple[str, str]], answered_by: str | None
) -> None:
    event = parse_push(body([("event", "answer"), ("callId", "9"), *fields]))
    assert event.answered_by == answered_by


@pytest.mark.parametrize(
    ("word", "cause"),
    [
        ("normalClearing", CallCause.NORMAL),
        ("busy", CallCause.BUSY),
        ("cancel", CallCause.CANCEL),
        ("noAnswer", CallCause.NO_ANSWER),
        ("congestion", CallCause.CONGESTION),
        ("notFound", CallCause.NOT_FOUND),
        ("forwarded", CallCause.FORWARDED),
        ("somethingNew", CallCause.OTHER),
        ("", CallCause.OTHER),
    ],
)
def test_every_hangup_cause(word: str, cause: CallCause) -> None:
    pairs = [("event", "hangup"), ("cause", word), ("callId", "7F1B2C3D4E5F")]
    pairs += [("from", "4917155500001"), ("to", "49305550100"), ("direction", "in")]
    event = parse_push(body(pairs), received_at=AT)
    assert (event.kind, event.cause, event.metadata["cause"]) == (CallEventKind.HANGUP, cause, word)


def test_every_documented_cause_has_its_own_meaning() -> None:
    assert len(set(CAUSES.values())) == len(CAUSES) == 7


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "event is missing"),
        (b"event=newCall", "callId is missing"),
        (b"event=dtmf&callId=1", "event must be one of newCall, answer, hangup, not 'dtmf'"),
        (b"event=newCall&callId=1&direction=up", "direction must be in or out, not 'up'"),
        (b"event=newCall&callId=\xff", "body is not UTF-8 form data"),
        (b"event=newCall&callId=%FF", "body is not UTF-8 form data"),
        (b"event=newCall&callId=a%00b", "callId contains control characters"),
        (b"event=newCall&callId=" + b"1" * 257, "callId is longer than 256 characters"),
        (b"a=1&" * 201, "body has more than 200 fields"),
        (b"x" * (64 * 1024 + 1), "body has 65537 bytes; at most 65536 are accepted"),
        (b"event=newCall&callId=1" + b"&userId[]=u" * 101, "userId[] is given more than 100 times"),
    ],
)
def test_malformed_pushes_say_why(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidCallForm) as invalid:
        parse_push(raw)
    assert invalid.value.reason == reason


def test_the_answer_asks_for_answer_and_hangup_pushes() -> None:
    assert answer_xml(
        "https://hub.example.com/webhooks/sipgate?x=1&y=2", 'https://h/"<hangup>"'
    ) == (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Response onAnswer="https://hub.example.com/webhooks/sipgate?x=1&amp;y=2" '
        'onHangup="https://h/&quot;&lt;hangup&gt;&quot;"/>'
    )


def test_the_answer_refuses_a_url_that_would_break_the_xml() -> None:
    with pytest.raises(ValueError):
        answer_xml("https://h/\x00", "https://h/")


def basic_header(user: str, password: str) -> str:
    """What sipgate sends for a push URL with user:password@ (an HTTP client's Basic auth)."""
    return encode_basic_auth(user, password)


def test_basic_credentials_as_sipgate_sends_them_pass() -> None:
    authenticate(BASIC, basic_header("sipgate", PASSWORD), None)


@pytest.mark.parametrize(
    ("config", "authorization", "token", "status", "reason"),
    [
        (BASIC, None, None, 401, "missing Authorization header (HTTP Basic)"),
        (BASIC, "Bearer abc", None, 401, "Authorization is not HTTP Basic"),
        (BASIC, "Basic !!!", None, 401, "Authorization is not valid base64"),
        (BASIC, "Basic ä", None, 401, "Authorization is not valid base64"),
        (BASIC, basic_header("sipgate", "wrong"), None, 403, "wrong user or password"),
        (BASIC, basic_header("other", PASSWORD), None, 403, "wrong user or password"),
        (
            BASIC,
            "Basic " + base64.b64encode(b"sipgate").decode(),
            None,
            403,
            "wrong user or password",
        ),
        # A token does not stand in for Basic credentials, nor the other way round.
        (BASIC, None, "url-token-1", 401, "missing Authorization header (HTTP Basic)"),
        (TOKENED, basic_header("sipgate", PASSWORD), None, 401, "missing token"),
        (TOKENED, None, "url-token-2", 403, "wrong token"),
        (TOKENED, None, "url-token-1\udc80", 403, "wrong token"),
        (TOKENED, None, "ü" * 5000, 403, "wrong token"),
        (
            SipgateConfig(enabled=True, auth="basic"),
            basic_header("sipgate", ""),
            None,
            403,
            "no Basic credentials configured (user, CRMHUB_VOICE__SIPGATE__PASSWORD); "
            "every request is refused",
        ),
        (
            SipgateConfig(enabled=True, auth="token"),
            None,
            "",
            403,
            "no token configured (CRMHUB_VOICE__SIPGATE__TOKEN); every request is refused",
        ),
    ],
)
def test_missing_or_wrong_credentials_are_refused(
    config: SipgateConfig, authorization: str | None, token: str | None, status: int, reason: str
) -> None:
    with pytest.raises(CallAuthRefused) as refused:
        authenticate(config, authorization, token)
    assert (refused.value.status, refused.value.reason) == (status, reason)


def test_the_url_token_passes() -> None:
    authenticate(TOKENED, None, "url-token-1")
