"""Erasure ("right to be forgotten"): the person's rows, files and raw mail, gone for good.

Removed: the customer (and records merged into it), identities, tags,
consent, conversations, history, notes, tasks and outbox bodies (they hang
off the customer with ON DELETE CASCADE), attachment files no other customer
uses, quarantined raw mail from their addresses or released into their
history, the event stream's kept events about them, and the detail of audit
entries about them (who did what, when, stays; what it contained goes).

Kept: keyed hashes of their identities in the suppression list, marked when
they had opted out, so an opted-out person is never contacted again and a
new mail from them starts a fresh, empty lead; and one audit entry "erase".

On SQLite every connection runs with `secure_delete` (freed pages are
zeroed) and the WAL is checkpointed and truncated after the erasure, so the
bytes are gone from the files, not merely unlinked from the b-tree. On
PostgreSQL deleted tuples stay in the table files until VACUUM reclaims the
space (README: run `VACUUM` after erasures when that matters).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from channels.email.attachments import AttachmentStore
from hub.errors import Invalid, NotFound
from hub.privacy import suppression
from hub.privacy.audit import Entry
from hub.privacy.held_mail import held_mail_of
from hub.store.db import LOCK_WAIT_SECONDS, Database
from hub.store.models import ConsentState, IdentityKind
from hub.store.tables import (
    attachment_t,
    audit_t,
    consent_t,
    customer_t,
    event_log_t,
    identity_t,
    interaction_t,
    quarantine_t,
)

log = logging.getLogger(__name__)

# Which channel's opt-out an identity kind stands for.
_CHANNEL_OF = {IdentityKind.EMAIL.value: "email", IdentityKind.PHONE.value: "sms"}


class ErasureError(ValueError):
    """Erasure cannot run; one line for the user."""


@dataclass(frozen=True, slots=True)
class ErasureReport:
    customer_id: int
    customers: int
    identities: int
    interactions: int
    files: int
    quarantined: int
    suppressed_opted_out: int


async def _opted_out_channels(conn: AsyncConnection, ids: list[int]) -> set[str]:
    rows = await conn.execute(
        select(consent_t.c.channel, consent_t.c.purpose, consent_t.c.state)
        .where(consent_t.c.customer_id.in_(ids))
        .order_by(consent_t.c.recorded_at.desc(), consent_t.c.id.desc())
    )
    newest: dict[tuple[str, str], str] = {}
    for channel, purpose, state in rows:
        newest.setdefault((channel, purpose), state)
    return {c for (c, _), state in newest.items() if state == ConsentState.OPTED_OUT.value}


async def erase_customer(
    db: Database,
    store: AttachmentStore,
    key: str,
    customer_id: int,
    *,
    actor_id: int | None,
    client: str | None,
) -> ErasureReport:
    if len(key) < suppression.MIN_KEY:
        raise ErasureError(
            "set CRMHUB_PRIVACY__SUPPRESSION_KEY (16+ characters): erasure keeps keyed "
            "hashes of the identities so that an opted-out person is never contacted again"
        )
    async with db.write() as s:
        conn = await s.connection()
        row = (
            await conn.execute(
                select(customer_t.c.id, customer_t.c.merged_into_id).where(
                    customer_t.c.id == customer_id
                )
            )
        ).first()
        if row is None:
            raise NotFound(f"no customer {customer_id}")
        if row.merged_into_id is not None:
            raise Invalid(
                f"customer {customer_id} was merged into {row.merged_into_id}; erase that"
            )
        merged = select(customer_t.c.id).where(customer_t.c.merged_into_id == customer_id)
        ids = [customer_id, *(await conn.execute(merged)).scalars()]
        identities = (
            await conn.execute(
                select(identity_t.c.kind, identity_t.c.value).where(
                    identity_t.c.customer_id.in_(ids)
                )
            )
        ).all()
        opted_out = await _opted_out_channels(conn, ids)
        marked = 0
        for kind, value in identities:
            out = _CHANNEL_OF.get(kind) in opted_out
            marked += out
            await suppression.add(conn, key, kind, value, out)
        interactions = select(interaction_t.c.id).where(interaction_t.c.customer_id.in_(ids))
        files = set(
            (
                await conn.execute(
                    select(attachment_t.c.sha256)
                    .where(attachment_t.c.interaction_id.in_(interactions))
                    .where(attachment_t.c.sha256.is_not(None))
                )
            ).scalars()
        )
        interaction_count = int(
            (
                await conn.execute(
                    select(func.count())
                    .select_from(interaction_t)
                    .where(interaction_t.c.customer_id.in_(ids))
                )
            ).scalar_one()
        )
        emails = {v for k, v in identities if k == IdentityKind.EMAIL.value}
        held = await held_mail_of(conn, interactions, emails)
        if held:
            await conn.execute(delete(quarantine_t).where(quarantine_t.c.id.in_(sorted(held))))
        await conn.execute(update(audit_t).where(audit_t.c.customer_id.in_(ids)).values(detail={}))
        # The kept window of the event stream names them too (sender, subject).
        about = [
            event_id
            for event_id, data in await conn.execute(select(event_log_t.c.id, event_log_t.c.data))
            if isinstance(data, dict) and data.get("customer_id") in ids
        ]
        if about:
            await conn.execute(delete(event_log_t).where(event_log_t.c.id.in_(about)))
        await conn.execute(delete(customer_t).where(customer_t.c.merged_into_id == customer_id))
        await conn.execute(delete(customer_t).where(customer_t.c.id == customer_id))
        # Files another customer's history still names stay.
        still = set(
            (
                await conn.execute(
                    select(attachment_t.c.sha256).where(attachment_t.c.sha256.in_(files))
                )
            ).scalars()
        )
        await conn.execute(
            audit_t.insert().values(
                Entry(
                    actor_id,
                    "erase",
                    "customer",
                    customer_id,
                    customer_id=customer_id,
                    client=client,
                    detail={"identities": len(identities), "interactions": interaction_count},
                ).row()
            )
        )
    removed = 0
    for sha in sorted(files - still):
        removed += await asyncio.to_thread(_remove, store, sha)
    if db.sqlite:
        await asyncio.to_thread(_checkpoint, db.url)
    return ErasureReport(
        customer_id, len(ids), len(identities), interaction_count, removed, len(held), marked
    )


def _checkpoint(url: str) -> None:
    """Copy the WAL into the database file and truncate it: the deleted rows' old
    pages in the WAL go with it. On a connection of its own, outside any
    transaction (the engines' connections always begin one)."""
    path = make_url(url).database
    if not path or path == ":memory:":
        return
    conn = sqlite3.connect(path, timeout=LOCK_WAIT_SECONDS)
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            log.warning("erasure: a reader held the WAL; its old pages go at the next checkpoint")
    finally:
        conn.close()


def _remove(store: AttachmentStore, sha: str) -> int:
    try:
        path = store.path_for(sha)
    except ValueError:
        return 0
    return 1 if store.remove(path) or not path.exists() else 0
