"""Which quarantined raw messages are about a person: erasure deletes them, the
subject access export hands them out.

A message is theirs when it was released into their history (whoever sent
it: a colleague's forward names them too) or when its From is one of their
email addresses (held, never stored in any history).
"""

from __future__ import annotations

import email
import email.policy
import email.utils
from collections.abc import Collection

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.store.tables import quarantine_t

HEAD_BYTES = 65536


def sender_of(raw: bytes) -> str:
    try:
        msg = email.message_from_bytes(raw[:HEAD_BYTES], policy=email.policy.compat32)
        return email.utils.parseaddr(str(msg.get("From", "") or ""))[1].lower()
    except Exception:
        return ""


async def held_mail_of(
    conn: AsyncConnection, interactions: Select[tuple[int]], emails: Collection[str]
) -> set[int]:
    """Ids of the quarantined messages about the person whose history is `interactions`."""
    found = set(
        (
            await conn.execute(
                select(quarantine_t.c.id).where(quarantine_t.c.interaction_id.in_(interactions))
            )
        ).scalars()
    )
    if emails:
        # Only the head of each message is read: the sender is in the first
        # headers, and the quarantine may hold many large hostile messages.
        head = func.substr(quarantine_t.c.raw, 1, HEAD_BYTES)
        for qid, raw in await conn.execute(select(quarantine_t.c.id, head)):
            if sender_of(bytes(raw)) in emails:
                found.add(qid)
    return found
