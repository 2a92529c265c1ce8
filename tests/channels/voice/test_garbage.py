"""Whatever a client posts, a voice parser answers with one of its two errors or an event.

Anything else escaping would be a 500 from the webhook. Hypothesis feeds
random bytes, random forms and random JSON, plus near-misses of real bodies
(the right keys with hostile values), which reach deeper than pure noise.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from channels.base import CallEvent
from channels.voice.config import PbxConfig, SipgateConfig
from channels.voice.errors import CallAuthRefused, InvalidCallForm
from channels.voice.pbx import answer_json, parse_request
from channels.voice.pbx import authenticate as pbx_authenticate
from channels.voice.sipgate import authenticate as sipgate_authenticate
from channels.voice.sipgate import parse_push
from channels.voice.twilio_voice import parse_status, parse_voice, verify

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEYS = [
    "event", "callId", "from", "to", "direction", "user", "user[]", "userId[]", "userId",
    "cause", "answeringNumber", "queue", "CallSid", "CallStatus", "Direction", "From", "To",
    "ParentCallSid", "CallDuration", "DialCallStatus", "DialCallDuration",
]  # fmt: skip
WORDS = [
    "newCall", "answer", "hangup", "in", "out", "ringing", "in-progress", "completed",
    "busy", "no-answer", "canceled", "inbound", "outbound-api", "client:", "client:x",
    "normalClearing", "", " ", "0", "-1", "9" * 40, "\x00", "\udc80", "ä", "\u202e",
]  # fmt: skip
values = st.one_of(st.sampled_from(WORDS), st.text(max_size=300))
forms = st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=20)), values, max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | values,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=10,
)
json_objects = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=10)
pair_lists = st.lists(st.tuples(st.sampled_from(KEYS), values), max_size=12)
JSON = "application/json"
PBX = PbxConfig(enabled=True, token=SecretStr("t"), block_list=["+49301234567", "anonymous"])


def assert_storable(event: CallEvent) -> None:
    """What an accepted event carries fits a PostgreSQL JSON column: no NaN, NUL or surrogate."""
    text = json.dumps(dict(event.metadata), allow_nan=False, ensure_ascii=False)
    text.encode("utf-8")
    stack: list[Any] = [dict(event.metadata)]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            assert "\x00" not in item
        elif isinstance(item, dict):
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, list):
            stack += item
    for value in (event.call_id, event.from_number, event.to_number, *event.users):
        assert "\x00" not in value and value.strip() == value


def form_body(pairs: list[tuple[str, str]]) -> bytes:
    return urlencode(pairs, encoding="utf-8", errors="surrogatepass").encode()


@FAST
@given(form=forms)
def test_twilio_forms(form: dict[str, str]) -> None:
    for parse in (parse_voice, parse_status):
        try:
            event = parse(form)
        except InvalidCallForm:
            continue
        if event is not None:
            assert_storable(event)
    try:
        verify("token", "https://h", "/p?" + form.get("To", ""), form, form)
    except CallAuthRefused as refused:
        assert refused.status == 403


@FAST
@given(form=st.dictionaries(st.text(), st.one_of(st.integers(), st.none(), st.binary())))
def test_twilio_forms_with_wrong_types(form: dict[str, Any]) -> None:
    with contextlib.suppress(InvalidCallForm):
        parse_status(form)


@FAST
@given(raw=st.one_of(st.binary(max_size=2000), pair_lists.map(form_body)))
def test_sipgate_bodies(raw: bytes) -> None:
    with contextlib.suppress(InvalidCallForm):
        assert_storable(parse_push(raw))


@FAST
@given(
    raw=st.one_of(
        st.binary(max_size=2000),
        pair_lists.map(form_body),
        json_objects.map(lambda d: json.dumps(d).encode()),
        json_values.map(lambda v: json.dumps(v).encode()),
    ),
    content_type=st.sampled_from(
        ["application/json", "application/x-www-form-urlencoded", "APPLICATION/JSON; x", "", "ä"]
    ),
)
def test_pbx_bodies(raw: bytes, content_type: str) -> None:
    try:
        event = parse_request(raw, content_type)
    except InvalidCallForm:
        return
    assert_storable(event)
    assert answer_json(event, PBX) in ('{"action":"reject","reason":"busy"}', "{}")


@FAST
@given(
    authorization=st.one_of(
        st.none(), st.text(), st.just("Basic ") | st.text().map("Basic ".__add__)
    ),
    token=st.one_of(st.none(), st.text()),
)
def test_credentials(authorization: str | None, token: str | None) -> None:
    configs = [
        SipgateConfig(enabled=True, auth="basic", password=SecretStr("p")),
        SipgateConfig(enabled=True, auth="token", token=SecretStr("t\u00fc")),
    ]
    for config in configs:
        try:
            sipgate_authenticate(config, authorization, token)
        except CallAuthRefused as refused:
            assert refused.status in (401, 403)
    try:
        pbx_authenticate(PBX, token)
    except CallAuthRefused as refused:
        assert refused.status in (401, 403)


HUGE = "9" * 10_000_000


@pytest.mark.parametrize(
    "parse",
    [
        lambda: parse_status({"CallSid": "CA1", "CallStatus": "completed", "CallDuration": HUGE}),
        lambda: parse_push(b"event=newCall&callId=" + HUGE.encode()),
        lambda: parse_request(b'{"event":"newCall","callId":' + HUGE.encode() + b"}", JSON),
        lambda: parse_request(b'{"event":"newCall","callId":"' + HUGE.encode() + b'"}', JSON),
    ],
)
def test_huge_values_are_refused(parse: Callable[[], object]) -> None:
    with pytest.raises(InvalidCallForm):
        parse()
