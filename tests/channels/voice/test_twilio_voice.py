"""Twilio Voice: requests signed with twilio's own RequestValidator, parsed into CallEvents."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from twilio.request_validator import RequestValidator

from channels.base import (
    CALL_DURATION_KEY,
    CallCause,
    CallEvent,
    CallEventKind,
    CallProvider,
    Direction,
)
from channels.voice.errors import CallAuthRefused, InvalidCallForm
from channels.voice.twilio_voice import (
    STATUS_PATH,
    VOICE_PATH,
    dial_twiml,
    hangup_twiml,
    parse_status,
    parse_voice,
    reject_twiml,
    verify,
)

TOKEN = "voice-test-token"
PUBLIC = "https://hub.example.com"
AT = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
PARENT = "CA" + "1" * 32
LEG = "CA" + "2" * 32


def incoming(**extra: str) -> dict[str, str]:
    """What Twilio posts when a call reaches our number."""
    return {
        "AccountSid": "AC" + "0" * 32,
        "ApiVersion": "2010-04-01",
        "CallSid": PARENT,
        "CallStatus": "ringing",
        "Called": "+49305550100",
        "Caller": "+4917155500001",
        "Direction": "inbound",
        "From": "+4917155500001",
        "FromCountry": "DE",
        "To": "+49305550100",
        "ToCountry": "DE",
        **extra,
    }


def leg(status: str, to: str = "client:alice", **extra: str) -> dict[str, str]:
    """A status callback of one agent's leg, rung by our <Dial>."""
    return {
        "AccountSid": "AC" + "0" * 32,
        "CallSid": LEG,
        "ParentCallSid": PARENT,
        "CallStatus": status,
        "Direction": "outbound-dial",
        "From": "+4917155500001",
        "To": to,
        "SequenceNumber": "0",
        **extra,
    }


def signed(params: dict[str, str], path: str, token: str = TOKEN) -> dict[str, str]:
    return {"X-Twilio-Signature": RequestValidator(token).compute_signature(PUBLIC + path, params)}


def test_a_request_signed_by_twilio_passes() -> None:
    form = incoming()
    verify(TOKEN, PUBLIC, VOICE_PATH, form, signed(form, VOICE_PATH))


def test_behind_a_trusted_proxy_the_forwarded_url_is_the_signed_one() -> None:
    form = leg("ringing")
    headers = {
        "X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(
            "https://public.example.org" + STATUS_PATH, form
        ),
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "public.example.org",
    }
    verify(TOKEN, "http://127.0.0.1:8080", STATUS_PATH, form, headers, trust_proxy=True)
    with pytest.raises(CallAuthRefused):
        verify(TOKEN, "http://127.0.0.1:8080", STATUS_PATH, form, headers, trust_proxy=False)


@pytest.mark.parametrize(
    ("token", "headers", "reason"),
    [
        (TOKEN, {}, "missing X-Twilio-Signature"),
        (TOKEN, signed(incoming(), VOICE_PATH, "other"), "X-Twilio-Signature does not match"),
        (TOKEN, signed(incoming(), STATUS_PATH), "X-Twilio-Signature does not match"),
        (TOKEN, {"X-Twilio-Signature": "ä\udc80"}, "X-Twilio-Signature does not match"),
        (
            "",
            signed(incoming(), VOICE_PATH),
            "no Twilio auth token configured (CRMHUB_VOICE__TWILIO__AUTH_TOKEN); "
            "nothing can be verified",
        ),
    ],
)
def test_unsigned_or_wrongly_signed_requests_are_refused_403(
    token: str, headers: dict[str, str], reason: str
) -> None:
    with pytest.raises(CallAuthRefused) as refused:
        verify(token, PUBLIC, VOICE_PATH, incoming(), headers)
    assert (refused.value.status, refused.value.reason) == (403, reason)


def test_a_field_changed_after_signing_is_refused() -> None:
    headers = signed(incoming(), VOICE_PATH)
    with pytest.raises(CallAuthRefused):
        verify(TOKEN, PUBLIC, VOICE_PATH, incoming(From="+4917100000000"), headers)


def test_a_form_with_undecodable_text_is_refused_not_crashed() -> None:
    form = {**incoming(), "From": "\udc80"}
    with pytest.raises(CallAuthRefused) as refused:
        verify(TOKEN, PUBLIC, VOICE_PATH, form, signed(incoming(), VOICE_PATH))
    assert refused.value.status == 403


def test_an_incoming_call_is_a_new_call() -> None:
    event = parse_voice(incoming(), received_at=AT)
    assert event == CallEvent(
        provider=CallProvider.TWILIO,
        call_id=PARENT,
        kind=CallEventKind.NEW_CALL,
        from_number="+4917155500001",
        to_number="+49305550100",
        direction=Direction.IN,
        occurred_at=AT,
        metadata=incoming(),
    )


def test_a_withheld_caller_stays_as_twilio_spells_it() -> None:
    assert parse_voice(incoming(From="anonymous"), received_at=AT).from_number == "anonymous"


@pytest.mark.parametrize(
    ("dial_status", "cause"),
    [
        ("completed", CallCause.NORMAL),
        ("answered", CallCause.NORMAL),
        ("busy", CallCause.BUSY),
        ("no-answer", CallCause.NO_ANSWER),
        ("failed", CallCause.FAILED),
        ("canceled", CallCause.CANCEL),
    ],
)
def test_the_dial_action_is_the_hangup(dial_status: str, cause: CallCause) -> None:
    form = incoming(CallStatus="in-progress", DialCallStatus=dial_status, DialCallDuration="42")
    event = parse_voice(form, received_at=AT)
    assert (event.kind, event.call_id, event.cause) == (CallEventKind.HANGUP, PARENT, cause)
    assert event.metadata[CALL_DURATION_KEY] == 42


@pytest.mark.parametrize(
    ("status", "direction", "kind", "cause"),
    [
        ("initiated", "outbound-api", CallEventKind.NEW_CALL, None),
        ("queued", "outbound-api", CallEventKind.NEW_CALL, None),
        ("ringing", "outbound-api", CallEventKind.NEW_CALL, None),
        ("in-progress", "outbound-api", CallEventKind.ANSWER, None),
        # Twilio picking up an inbound call to run our TwiML is no agent answering.
        ("in-progress", "inbound", CallEventKind.NEW_CALL, None),
        ("completed", "inbound", CallEventKind.HANGUP, CallCause.NORMAL),
        ("busy", "outbound-api", CallEventKind.HANGUP, CallCause.BUSY),
        ("no-answer", "outbound-api", CallEventKind.HANGUP, CallCause.NO_ANSWER),
        ("failed", "outbound-api", CallEventKind.HANGUP, CallCause.FAILED),
        ("canceled", "inbound", CallEventKind.HANGUP, CallCause.CANCEL),
    ],
)
def test_every_status_of_the_call_itself(
    status: str, direction: str, kind: CallEventKind, cause: CallCause | None
) -> None:
    form = incoming(CallStatus=status, Direction=direction, CallDuration="0")
    event = parse_status(form, received_at=AT)
    assert event is not None
    assert (event.call_id, event.kind, event.cause, event.users, event.answered_by) == (
        PARENT,
        kind,
        cause,
        (),
        None,
    )
    assert event.direction is (Direction.IN if direction == "inbound" else Direction.OUT)
    assert event.metadata[CALL_DURATION_KEY] == 0


def test_an_agent_leg_ringing_answered_and_completed_is_keyed_by_the_parent_call() -> None:
    ringing = parse_status(leg("ringing"), received_at=AT)
    answered = parse_status(leg("in-progress"), received_at=AT)
    completed = parse_status(leg("completed", CallDuration="61"), received_at=AT)
    assert ringing == CallEvent(
        provider=CallProvider.TWILIO,
        call_id=PARENT,
        kind=CallEventKind.NEW_CALL,
        from_number="+4917155500001",
        to_number="",
        users=("alice",),
        occurred_at=AT,
        metadata=leg("ringing"),
    )
    assert answered is not None and completed is not None
    assert (answered.call_id, answered.kind, answered.answered_by) == (
        PARENT,
        CallEventKind.ANSWER,
        "alice",
    )
    assert (completed.kind, completed.cause, completed.metadata[CALL_DURATION_KEY]) == (
        CallEventKind.HANGUP,
        CallCause.NORMAL,
        61,
    )


def test_a_leg_to_a_number_names_the_number() -> None:
    event = parse_status(leg("in-progress", to="+4917199900001"), received_at=AT)
    assert event is not None and event.answered_by == "+4917199900001"


@pytest.mark.parametrize("status", ["busy", "no-answer", "failed", "canceled"])
def test_a_leg_nobody_took_is_no_event(status: str) -> None:
    assert parse_status(leg(status)) is None


@pytest.mark.parametrize(
    ("form", "reason"),
    [
        ({"CallStatus": "ringing"}, "CallSid is missing"),
        (incoming(CallStatus=""), "CallStatus is missing"),
        (incoming(CallStatus="answered"), "CallStatus 'answered' is not one Twilio sends"),
        (incoming(CallStatus="exploded"), "CallStatus 'exploded' is not one Twilio sends"),
        (
            incoming(Direction="sideways"),
            "Direction must be one of inbound, outbound-api, outbound-dial, not 'sideways'",
        ),
        (incoming(CallDuration="-1"), "CallDuration must be a number of seconds, not '-1'"),
        (
            incoming(CallDuration="9" * 11),
            f"CallDuration must be a number of seconds, not '{'9' * 11}'",
        ),
        (leg("ringing", to="client:"), "To names no agent"),
        (leg("ringing", CallerName="a\x00b"), "body contains a NUL character"),
        (leg("ringing", To="client:a\nb"), "To contains control characters"),
    ],
)
def test_malformed_status_callbacks_say_why(form: dict[str, str], reason: str) -> None:
    with pytest.raises(InvalidCallForm) as invalid:
        parse_status(form)
    assert invalid.value.reason == reason


def test_an_unknown_dial_status_is_refused() -> None:
    with pytest.raises(InvalidCallForm, match="DialCallStatus 'later' is not one Twilio sends"):
        parse_voice(incoming(DialCallStatus="later"))


def test_the_dial_rings_clients_and_numbers_and_asks_for_every_leg_event() -> None:
    twiml = dial_twiml(
        ["client:alice", "+4917199900001"],
        PUBLIC + STATUS_PATH + "?a=1&b=2",
        timeout=25,
        caller_id="+49305550100",
        action=PUBLIC + VOICE_PATH,
    )
    leg_attrs = (
        'statusCallback="https://hub.example.com/webhooks/twilio/voice/status?a=1&amp;b=2" '
        'statusCallbackEvent="initiated ringing answered completed" statusCallbackMethod="POST"'
    )
    assert twiml == (
        '<?xml version="1.0" encoding="UTF-8"?><Response>'
        '<Dial action="https://hub.example.com/webhooks/twilio/voice" callerId="+49305550100" '
        f'timeout="25"><Client {leg_attrs}>alice</Client>'
        f"<Number {leg_attrs}>+4917199900001</Number></Dial></Response>"
    )


def test_the_dial_escapes_every_name() -> None:
    twiml = dial_twiml(['client:<b>"x"&y'], 'http://h/s?q="<&>"')
    assert twiml == (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Dial timeout="20">'
        '<Client statusCallback="http://h/s?q=&quot;&lt;&amp;&gt;&quot;" '
        'statusCallbackEvent="initiated ringing answered completed" '
        'statusCallbackMethod="POST">&lt;b&gt;"x"&amp;y</Client></Dial></Response>'
    )


@pytest.mark.parametrize("targets", [[], [""], ["client:"], ["client:a\x00b"], ["+49\n30"]])
def test_the_dial_refuses_targets_that_are_no_agent(targets: list[str]) -> None:
    with pytest.raises(ValueError):
        dial_twiml(targets, PUBLIC + STATUS_PATH)


def test_hangup_and_reject_answers() -> None:
    assert hangup_twiml() == '<?xml version="1.0" encoding="UTF-8"?><Response><Hangup /></Response>'
    assert reject_twiml() == (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Reject reason="busy" /></Response>'
    )
