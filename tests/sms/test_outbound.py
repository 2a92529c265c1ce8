"""The SMS adapter's send: the real twilio library against a local fake of Twilio's API."""

from __future__ import annotations

import base64
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from channels.base import Channel, DeliveryResult, DeliveryState, OutboundMessage
from channels.sms.config import SmsConfig
from channels.sms.outbound import TwilioSmsSender
from tests.support.twilio_fake import ACCOUNT_SID, MESSAGES_PATH, TwilioFake, twilio_fake

TO = "+4917155500001"


@pytest.fixture
async def fake() -> AsyncIterator[TwilioFake]:
    async with twilio_fake() as running:
        yield running


def _config(fake: TwilioFake, **extra: Any) -> SmsConfig:
    base: dict[str, Any] = {
        "enabled": True,
        "account_sid": ACCOUNT_SID,
        "auth_token": "secret-token",
        "from_number": "+4930555000",
        "public_url": "https://crm.example.com",
        "api_base_url": fake.base_url,
    }
    return SmsConfig(**(base | extra))


async def _send(config: SmsConfig, text: str = "Hallo", **meta: Any) -> DeliveryResult:
    sender = TwilioSmsSender(config, timeout=5)
    try:
        return await sender.send(OutboundMessage(Channel.SMS, TO, text, metadata=meta))
    finally:
        await sender.close()


async def test_sends_exactly_what_twilio_expects_from_a_number(fake: TwilioFake) -> None:
    result = await _send(_config(fake), "Grüße 😀", status_callback_query="outbox=7")
    assert result == DeliveryResult(DeliveryState.QUEUED, provider_id=f"SM{1:032x}")
    [request] = fake.requests
    assert request.path == MESSAGES_PATH
    assert request.form == {
        "To": TO,
        "Body": "Grüße 😀",
        "From": "+4930555000",
        "StatusCallback": "https://crm.example.com/webhooks/twilio/sms/status?outbox=7",
    }
    expected_auth = base64.b64encode(f"{ACCOUNT_SID}:secret-token".encode()).decode()
    assert request.auth == f"Basic {expected_auth}"


async def test_a_messaging_service_wins_over_the_number(fake: TwilioFake) -> None:
    config = _config(fake, messaging_service_sid="MG" + "b" * 32)
    assert TwilioSmsSender(config).sender == "MG" + "b" * 32
    result = await _send(config)
    assert result.state == DeliveryState.QUEUED
    assert fake.requests[0].form == {
        "To": TO,
        "Body": "Hallo",
        "MessagingServiceSid": "MG" + "b" * 32,
        "StatusCallback": "https://crm.example.com/webhooks/twilio/sms/status",
    }


@pytest.mark.parametrize(
    ("status", "code", "state", "error_code"),
    [
        (400, 21610, DeliveryState.FAILED, "21610"),
        (400, 21211, DeliveryState.FAILED, "21211"),
        (401, 20003, DeliveryState.FAILED, "20003"),
        (429, 20429, DeliveryState.TEMPORARY_FAILURE, "20429"),
        (500, None, DeliveryState.TEMPORARY_FAILURE, "500"),
        (503, None, DeliveryState.TEMPORARY_FAILURE, "503"),
    ],
)
async def test_errors_are_sorted_into_retry_or_give_up(
    fake: TwilioFake, status: int, code: int | None, state: DeliveryState, error_code: str
) -> None:
    fake.fail_next(1, status, code)
    result = await _send(_config(fake))
    assert (result.state, result.error_code, result.provider_id) == (state, error_code, None)
    assert result.error is not None and result.error.startswith(f"HTTP {status}")


@pytest.mark.parametrize(
    ("status", "state"), [(400, DeliveryState.FAILED), (503, DeliveryState.TEMPORARY_FAILURE)]
)
async def test_problem_details_errors_are_sorted_too(
    fake: TwilioFake, status: int, state: DeliveryState
) -> None:
    fake.fail_next(1, status, 21610, problem=True)
    result = await _send(_config(fake))
    assert (result.state, result.error_code, result.error) == (
        state,
        "21610",
        f"HTTP {status}: fake problem {status}",
    )


async def test_an_unreachable_api_is_a_temporary_failure() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = SmsConfig(
        account_sid=ACCOUNT_SID,
        auth_token="t",
        from_number="+4930555000",
        api_base_url=f"http://127.0.0.1:{port}",
    )
    result = await _send(config)
    assert (result.state, result.error_code) == (DeliveryState.TEMPORARY_FAILURE, "network")


async def test_an_oversized_body_fails_before_any_request(fake: TwilioFake) -> None:
    result = await _send(_config(fake, max_body_chars=20), "x" * 21)
    assert result.state == DeliveryState.FAILED
    assert result.error_code == "body_too_long"
    assert fake.requests == []


def test_a_sender_needs_an_account_and_a_from() -> None:
    with pytest.raises(ValueError, match="account_sid"):
        TwilioSmsSender(SmsConfig(account_sid="AC1"))
