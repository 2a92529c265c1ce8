"""Checking that a webhook really comes from Twilio (X-Twilio-Signature).

Twilio signs the full URL it called plus every POST parameter, including
ones it adds in the future, so the check must use the URL as Twilio saw it
(behind a proxy: the public one) and all parameters as received.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

from twilio.request_validator import RequestValidator

SIGNATURE_HEADER = "X-Twilio-Signature"


def public_url(
    public_base: str,
    path_qs: str,
    headers: Mapping[str, str],
    *,
    trust_proxy: bool,
) -> str:
    """The URL Twilio called: the configured public base, or what a trusted proxy says."""
    base = urlsplit(public_base)
    scheme, netloc = base.scheme, base.netloc
    if trust_proxy:
        scheme = headers.get("X-Forwarded-Proto", scheme).split(",")[0].strip() or scheme
        netloc = headers.get("X-Forwarded-Host", netloc).split(",")[0].strip() or netloc
    path, _, query = path_qs.partition("?")
    prefix = base.path.rstrip("/")
    return urlunsplit((scheme, netloc, prefix + path, query, ""))


def is_valid(auth_token: str, url: str, params: Mapping[str, str], signature: str | None) -> bool:
    if not signature or not auth_token:
        return False
    validator = RequestValidator(auth_token)
    # The URL exactly as configured matches in the common case: one HMAC. Twilio's
    # validate() always computes two (the URL with and without an explicit port).
    if hmac.compare_digest(str(validator.compute_signature(url, dict(params))), signature):
        return True
    return bool(validator.validate(url, dict(params), signature))


def sign(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """What Twilio would send; for tests and local tools."""
    return str(RequestValidator(auth_token).compute_signature(url, dict(params)))
