"""The suppression list: keyed hashes of erased people's identities.

Erasure removes the person; what must remain so that an opted-out person is
never contacted again is kept only as HMAC-SHA256(key, "kind:value"). The
key (privacy.suppression_key, from the environment) makes the list useless
to anyone who copies the database: a plain hash of a phone number is
reversed by hashing every number there is.
"""

from __future__ import annotations

import hashlib
import hmac

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.store.models import utcnow
from hub.store.tables import suppression_t

MIN_KEY = 16


def digest(key: str, kind: str, value: str) -> str:
    return hmac.new(key.encode(), f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


async def add(conn: AsyncConnection, key: str, kind: str, value: str, opted_out: bool) -> None:
    d = digest(key, kind, value)
    found = (
        await conn.execute(
            select(suppression_t.c.id, suppression_t.c.opted_out)
            .where(suppression_t.c.kind == kind)
            .where(suppression_t.c.digest == d)
        )
    ).first()
    if found is None:
        await conn.execute(
            suppression_t.insert().values(
                kind=kind, digest=d, opted_out=opted_out, created_at=utcnow()
            )
        )
    elif opted_out and not found.opted_out:
        await conn.execute(
            suppression_t.update().where(suppression_t.c.id == found.id).values(opted_out=True)
        )


async def opted_out_before_erasure(conn: AsyncConnection, key: str, kind: str, value: str) -> bool:
    """True when an erased person with this identity had opted out: never contact it."""
    if len(key) < MIN_KEY:
        return False  # no key, so nothing was ever erased into the list
    return bool(
        (
            await conn.execute(
                select(suppression_t.c.id)
                .where(suppression_t.c.kind == kind)
                .where(suppression_t.c.digest == digest(key, kind, value))
                .where(suppression_t.c.opted_out)
            )
        ).first()
    )
