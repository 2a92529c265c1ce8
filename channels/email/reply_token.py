"""Signed reply-token addresses: `reply+c42-1f2e3d4c5b6a7980@example.com`.

Every mail we send carries one in Reply-To. A reply whose In-Reply-To and
References were stripped (some webmailers, forwarding rules, mobile apps)
still reaches the token address, and the token names the conversation.

The token is the conversation id plus a truncated HMAC-SHA256 over it, in
lower-case hex: mail servers may fold the local part to lower case, and
nobody can write into a conversation by guessing its id. 64 bits of MAC is
plenty for an address that only routes mail (it grants no access).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable

_TOKEN = re.compile(r"\+c(\d{1,12})-([0-9a-f]{16})@", re.IGNORECASE)


def _mac(secret: str, conversation_id: int) -> str:
    digest = hmac.new(secret.encode(), f"c{conversation_id}".encode(), hashlib.sha256)
    return digest.hexdigest()[:16]


def reply_address(base: str, secret: str, conversation_id: int) -> str:
    """`base` (local@domain) with the token as sub-address: local+c<id>-<mac>@domain."""
    local, _, domain = base.partition("@")
    local = local.split("+", 1)[0]
    return f"{local}+c{conversation_id}-{_mac(secret, conversation_id)}@{domain}"


def conversation_of(addresses: Iterable[str], secret: str) -> int | None:
    """The conversation id of the first address with a valid token, else None."""
    if not secret:
        return None
    for address in addresses:
        match = _TOKEN.search(address or "")
        if match is None:
            continue
        conv_id = int(match.group(1))
        if hmac.compare_digest(match.group(2).lower(), _mac(secret, conv_id)):
            return conv_id
    return None
