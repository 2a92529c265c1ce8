"""The audit log: who read, changed, exported or erased what, when, from where.

Append-only rows in `audit_event`. Changes write their own entry in the
same transaction (`write_in`: customer create/change/delete, merge, consent,
reply sent, erase; subject exports commit theirs before the archive leaves); every
API request of a logged-in user is recorded by the web layer through
`AuditLog.record`, which queues entries and writes them in batches (one
insert per batch, not a commit per read), so reading a card costs the
database next to nothing. A crash loses at most the last fraction of a
second of *read* entries; changes are never only in this queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.store.db import Database
from hub.store.models import utcnow
from hub.store.tables import audit_t

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.5
BATCH_MAX = 500


@dataclass(frozen=True, slots=True)
class Entry:
    actor_id: int | None
    action: str
    entity: str
    entity_id: int | None = None
    customer_id: int | None = None
    client: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    at: datetime = field(default_factory=utcnow)

    def row(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "actor_id": self.actor_id,
            "action": self.action[:50],
            "entity": self.entity[:50],
            "entity_id": self.entity_id,
            "customer_id": self.customer_id,
            "client": (self.client or None) and self.client[:64],
            "detail": self.detail,
        }


async def write_in(conn: AsyncConnection, entry: Entry) -> None:
    """Write `entry` in the caller's transaction: the change and its entry commit
    (or roll back) together, for changes whose record must survive a crash."""
    await conn.execute(insert(audit_t), [entry.row()])


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._pending: list[Entry] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def record(self, entry: Entry) -> None:
        self._pending.append(entry)
        if len(self._pending) >= BATCH_MAX:
            self._wake.set()

    async def write_now(self, entry: Entry) -> None:
        """For entries that must not wait (logins, exports, erasures)."""
        async with self.db.write() as s:
            await (await s.connection()).execute(insert(audit_t), [entry.row()])

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.flush()
        except Exception:
            log.error("%d audit entries could not be written at shutdown", len(self._pending))

    async def flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:BATCH_MAX], self._pending[BATCH_MAX:]
            try:
                async with self.db.write() as s:
                    await (await s.connection()).execute(insert(audit_t), [e.row() for e in batch])
            except Exception:
                # Kept for the next round: the database may be back by then.
                self._pending[:0] = batch
                raise

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), FLUSH_SECONDS)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:
                log.warning("audit entries not written yet; retrying", exc_info=True)
                await asyncio.sleep(FLUSH_SECONDS)


@dataclass(frozen=True, slots=True)
class AuditQuery:
    actor_id: int | None = None
    customer_id: int | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    after_id: int | None = None
    limit: int = 100


async def search(db: Database, q: AuditQuery) -> Sequence[Row[Any]]:
    query = select(audit_t).order_by(audit_t.c.id)
    for column, value in (
        (audit_t.c.actor_id, q.actor_id),
        (audit_t.c.customer_id, q.customer_id),
        (audit_t.c.action, q.action),
    ):
        if value is not None:
            query = query.where(column == value)
    if q.since is not None:
        query = query.where(audit_t.c.at >= q.since)
    if q.until is not None:
        query = query.where(audit_t.c.at < q.until)
    if q.after_id is not None:
        query = query.where(audit_t.c.id > q.after_id)
    async with db.read() as s:
        conn = await s.connection()
        return (await conn.execute(query.limit(q.limit))).all()


def entry_json(row: Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "at": row.at.isoformat(),
        "actor_id": row.actor_id,
        "action": row.action,
        "entity": row.entity,
        "entity_id": row.entity_id,
        "customer_id": row.customer_id,
        "client": row.client,
        "detail": row.detail,
    }
