"""Password hashing: scrypt at N = 2^17, off the event loop, the same work for unknown users.

scrypt is in the standard library and memory-hard. At N = 2^17 (r = 8,
p = 1: 128 MB and ~0.3 s per hash on our 2-core machine) a stolen hash
costs an attacker that much per guess; the work runs in a thread so that
logins never stall webhooks and API requests. Hashes name their cost
(`scrypt$17$8$1$salt$digest`); older ones (`scrypt$salt$digest`, N = 2^14)
still verify and are rehashed at the next successful login.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import secrets

DEFAULT_COST = 17  # log2 of scrypt's N
_R, _P = 8, 1
_LEGACY_COST = 14


def _scrypt(password: str, salt: bytes, cost: int, r: int = _R, p: int = _P) -> bytes:
    n = 2**cost
    # scrypt needs 128 * r * n bytes; the default cap (32 MB) is below N = 2^17.
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, dklen=32, maxmem=2 * 128 * r * n + 2**20
    )


def hash_password(password: str, cost: int = DEFAULT_COST) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, cost)
    b64 = base64.b64encode
    return f"scrypt${cost}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = stored.split("$")
    try:
        if len(parts) == 3 and parts[0] == "scrypt":  # before costs were written down
            return _LEGACY_COST, _R, _P, base64.b64decode(parts[1]), base64.b64decode(parts[2])
        if len(parts) == 6 and parts[0] == "scrypt":
            cost, r, p = int(parts[1]), int(parts[2]), int(parts[3])
            return cost, r, p, base64.b64decode(parts[4]), base64.b64decode(parts[5])
    except ValueError:
        pass
    return None


def verify_password(password: str, stored: str | None) -> bool:
    parsed = _parse(stored or "")
    if parsed is None:
        return False
    cost, r, p, salt, digest = parsed
    return hmac.compare_digest(_scrypt(password, salt, cost, r, p), digest)


def needs_rehash(stored: str, cost: int) -> bool:
    parsed = _parse(stored)
    return parsed is None or parsed[0] < cost or parsed[1:3] != (_R, _P)


@functools.cache
def _dummy(cost: int) -> str:
    return hash_password(secrets.token_urlsafe(16), cost)


def check(password: str, stored: str | None, cost: int) -> bool:
    """Verify; a missing user or password costs one hash all the same, so the
    answer's timing does not tell who has an account."""
    if not stored:
        verify_password(password, _dummy(cost))
        return False
    return verify_password(password, stored)


async def check_async(password: str, stored: str | None, cost: int) -> bool:
    return await asyncio.to_thread(check, password, stored, cost)


async def hash_async(password: str, cost: int) -> str:
    return await asyncio.to_thread(hash_password, password, cost)
