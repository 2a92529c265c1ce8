"""Checking a shared secret (a URL token, HTTP Basic credentials) in constant time.

The comparison is on bytes: `hmac.compare_digest` refuses a str with
non-ASCII characters (a TypeError, i.e. a 500, for a forged header), and
"surrogatepass" encodes even the lone surrogates a decoded URL can hold.
A missing credential answers 401, a wrong one 403, and a secret that is
not configured refuses everything (403) rather than letting anything in.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from channels.voice.errors import CallAuthRefused

BASIC_PREFIX = "basic "
# Longer than any secret we configure; bounds the work for a forged header.
MAX_CREDENTIAL_CHARS = 1024


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def same_secret(given: str, expected: str) -> bool:
    """Whether `given` equals the configured secret; an empty secret matches nothing."""
    if not expected or len(given) > MAX_CREDENTIAL_CHARS:
        return False
    return hmac.compare_digest(_bytes(given), _bytes(expected))


def check_token(given: str | None, expected: str, *, variable: str) -> None:
    """A token from the URL; `variable` names where the configured one comes from."""
    if not expected:
        raise CallAuthRefused(403, f"no token configured ({variable}); every request is refused")
    if not given:
        raise CallAuthRefused(401, "missing token")
    if not same_secret(given, expected):
        raise CallAuthRefused(403, "wrong token")


def check_basic(authorization: str | None, user: str, password: str, *, variable: str) -> None:
    """An `Authorization: Basic …` header against the configured user and password.

    User and password are compared as one "user:password" string, so the time
    taken says nothing about which of the two was wrong.
    """
    if not user or not password:
        raise CallAuthRefused(
            403, f"no Basic credentials configured (user, {variable}); every request is refused"
        )
    if not authorization:
        raise CallAuthRefused(401, "missing Authorization header (HTTP Basic)")
    if len(authorization) > MAX_CREDENTIAL_CHARS or not authorization.lower().startswith(
        BASIC_PREFIX
    ):
        raise CallAuthRefused(401, "Authorization is not HTTP Basic")
    encoded = authorization[len(BASIC_PREFIX) :].strip()
    try:
        decoded = base64.b64decode(_bytes(encoded), validate=True)
    except (binascii.Error, ValueError):
        raise CallAuthRefused(401, "Authorization is not valid base64") from None
    if not hmac.compare_digest(decoded, _bytes(f"{user}:{password}")):
        raise CallAuthRefused(403, "wrong user or password")
