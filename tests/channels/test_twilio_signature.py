"""The one signature check every Twilio webhook uses: the reason for each refusal."""

from __future__ import annotations

import pytest

from channels.sms.signature import (
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    refusal,
    sign,
)

TOKEN = "auth-token-for-tests"
URL = "https://hub.example.com/webhooks/twilio/sms?outbox=7"
PARAMS = {"MessageSid": "SM1", "From": "+4915112345678", "Body": "hi"}


def test_a_request_signed_with_the_auth_token_passes() -> None:
    headers = {SIGNATURE_HEADER: sign(TOKEN, URL, PARAMS)}
    assert refusal(TOKEN, URL, PARAMS, headers) is None


@pytest.mark.parametrize(
    ("token", "headers", "reason"),
    [
        (
            "",
            {SIGNATURE_HEADER: sign(TOKEN, URL, PARAMS)},
            "no Twilio auth token configured (CRMHUB_SMS__AUTH_TOKEN); nothing can be verified",
        ),
        (TOKEN, {}, "missing X-Twilio-Signature"),
        (
            TOKEN,
            {SIGNATURE_HEADER: sign("another-token", URL, PARAMS)},
            "X-Twilio-Signature does not match",
        ),
        (
            TOKEN,
            {SIGNATURE_HEADER: "x", SIGNATURE_SETTINGS_HEADER: "v1"},
            "signed with a Twilio Webhooks shared key, which crmhub does not support",
        ),
    ],
)
def test_each_refusal_names_its_reason(token: str, headers: dict[str, str], reason: str) -> None:
    assert refusal(token, URL, PARAMS, headers) == reason


def test_a_parameter_added_after_signing_is_refused() -> None:
    headers = {SIGNATURE_HEADER: sign(TOKEN, URL, PARAMS)}
    assert refusal(TOKEN, URL, {**PARAMS, "Body": "changed"}, headers) == (
        "X-Twilio-Signature does not match"
    )
