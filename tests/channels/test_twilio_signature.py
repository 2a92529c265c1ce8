"""The one signature check every Twilio webhook uses: the reason for each refusal."""

from __future__ import annotations

import pytest
from twilio.request_validator import RequestValidator

from channels.sms.signature import (
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    compute_signature,
    is_valid,
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


@pytest.mark.parametrize(
    "params",
    [
        {},
        PARAMS,
        # Code point order, not case-folded: "Body" < "From" < "body" < "from".
        {"body": "lower", "Body": "upper", "from": "x", "From": "y", "_": "", "0": "0"},
        {"Body": "Grüße 😀 ☃ \u00e9\u0301", "From": "+49 (0)30 12345", "Empty": ""},
        {"A": "&=?+%20", "A2": "line\nbreak\ttab", "Ä": "non-ASCII name"},
        {f"Field{i}": str(i) * (i % 7) for i in range(40)},
    ],
)
@pytest.mark.parametrize(
    "url", [URL, "http://127.0.0.1:8080/webhooks/twilio/sms", "https://h.example/ü?a=b&c=%C3%BC"]
)
def test_the_signature_is_the_twilio_librarys(url: str, params: dict[str, str]) -> None:
    expected = RequestValidator(TOKEN).compute_signature(url, params)
    assert compute_signature(TOKEN, url, params) == expected
    assert is_valid(TOKEN, url, params, expected)
    assert not is_valid(TOKEN, url, params, compute_signature("other", url, params))


def test_the_url_with_the_default_port_added_or_removed_still_passes() -> None:
    """Twilio signs some requests with an explicit :443 and some without (its
    library checks both); the fast path checks the URL as given, then falls back."""
    with_port = "https://hub.example.com:443/webhooks/twilio/sms"
    without = "https://hub.example.com/webhooks/twilio/sms"
    assert is_valid(TOKEN, without, PARAMS, sign(TOKEN, with_port, PARAMS))
    assert is_valid(TOKEN, with_port, PARAMS, sign(TOKEN, without, PARAMS))
    assert not is_valid(TOKEN, without, PARAMS, sign(TOKEN, with_port, {**PARAMS, "Body": "x"}))


@pytest.mark.parametrize("given", ["", "é" * 28, "not base64 at all", "A" * 27 + "="])
def test_a_malformed_signature_is_refused_without_an_error(given: str) -> None:
    assert not is_valid(TOKEN, URL, PARAMS, given)
