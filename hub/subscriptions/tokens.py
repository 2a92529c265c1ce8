"""Signed tokens in unsubscribe and sign-up links: who, which address, which campaign.

A token is `<purpose>.<customer>.<identity>.<campaign>.<issued>.<mac>`: the
numbers in base 36 (empty for none), `issued` in hours since 1970, and the MAC
the first 16 bytes of HMAC-SHA256 over everything before it, base64url. About
40 characters, URL-safe, no padding, no server-side state: anyone holding the
link can unsubscribe that one address (RFC 8058 wants exactly that, with no
login), and nobody can make a link for another customer without the key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from urllib.parse import quote

from hub.config import Settings
from hub.errors import BadRequest

UNSUBSCRIBE = "u"
CONFIRM_SIGNUP = "s"
PURPOSES = (UNSUBSCRIBE, CONFIRM_SIGNUP)
MAC_BYTES = 16
MAX_TOKEN = 200
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


class InvalidToken(BadRequest):
    """Forged, truncated or for another purpose: 400, and nothing is changed."""

    def __init__(self, detail: str = "this link is not valid") -> None:
        super().__init__(detail)


@dataclass(frozen=True, slots=True)
class TokenClaims:
    purpose: str
    customer_id: int
    identity_id: int | None
    campaign_id: int | None
    issued_hour: int  # hours since the epoch, UTC


def _b36(n: int | None) -> str:
    if n is None:
        return ""
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = _DIGITS[r] + out
        if n == 0:
            return out


def _mac(key: str, payload: str) -> str:
    digest = hmac.new(key.encode(), payload.encode(), hashlib.sha256).digest()[:MAC_BYTES]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _key(key: str) -> str:
    if len(key) < 16:
        raise ValueError("the token key must have 16+ characters (subscriptions.token_key)")
    return key


def make_token(
    key: str,
    customer_id: int,
    identity_id: int | None,
    campaign_id: int | None,
    *,
    purpose: str = UNSUBSCRIBE,
    now: float | None = None,
) -> str:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    hour = int((time.time() if now is None else now) // 3600)
    payload = ".".join(
        (purpose, _b36(customer_id), _b36(identity_id), _b36(campaign_id), _b36(hour))
    )
    return f"{payload}.{_mac(_key(key), payload)}"


def _int(raw: str, *, optional: bool, least: int = 1) -> int | None:
    if raw == "" and optional:
        return None
    # Only what _b36 writes: lower-case base 36, no sign, no padding, bounded.
    if not raw or len(raw) > 8 or not all(ch in _DIGITS for ch in raw):
        raise InvalidToken()
    value = int(raw, 36)
    if value < least:
        raise InvalidToken()
    return value


def read_token(key: str, token: str, *, purpose: str = UNSUBSCRIBE) -> TokenClaims:
    """The claims of a token this hub made for `purpose`; InvalidToken for anything else."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN:
        raise InvalidToken()
    parts = token.split(".")
    if len(parts) != 6:
        raise InvalidToken()
    payload, mac = ".".join(parts[:5]), parts[5]
    if not hmac.compare_digest(mac.encode(), _mac(_key(key), payload).encode()):
        raise InvalidToken()
    if parts[0] != purpose:
        raise InvalidToken()
    customer = _int(parts[1], optional=False)
    assert customer is not None
    hour = _int(parts[4], optional=False, least=0)
    assert hour is not None
    return TokenClaims(
        parts[0],
        customer,
        _int(parts[2], optional=True),
        _int(parts[3], optional=True),
        hour,
    )


def public_base(settings: Settings) -> str:
    """The URL customers reach this hub at (server.public_url), without a trailing slash."""
    url = settings.server.public_url or f"http://{settings.server.host}:{settings.server.port}"
    return url.rstrip("/")


def unsubscribe_url(settings: Settings, token: str) -> str:
    return f"{public_base(settings)}/u/{token}"


def unsubscribe_mailto(settings: Settings, token: str) -> str:
    """mailto: the configured unsubscribe address, the token as the subject."""
    address = settings.subscriptions.unsubscribe_address
    if not address:
        raise ValueError("subscriptions.unsubscribe_address is not set")
    return f"mailto:{address}?subject={quote('unsubscribe ' + token)}"
