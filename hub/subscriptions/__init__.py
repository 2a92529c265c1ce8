"""Unsubscribe links (RFC 8058 one-click), consent changes from them, newsletter sign-up."""

from hub.subscriptions.tokens import (
    InvalidToken,
    TokenClaims,
    make_token,
    read_token,
    unsubscribe_mailto,
    unsubscribe_url,
)

__all__ = [
    "InvalidToken",
    "TokenClaims",
    "make_token",
    "read_token",
    "unsubscribe_mailto",
    "unsubscribe_url",
]
