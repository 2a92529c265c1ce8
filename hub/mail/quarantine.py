"""The mail quarantine: messages kept raw because they could not be parsed or stored.

A retry runs the message through the same reader (channels/email/inbound.py)
and pipeline as the IMAP sync; a release and its history entry commit
together, so a retry that races another (or a crash) never stores a message
twice — and ingest dedupes by Message-ID on top of that.

`Quarantine` is given the three things it uses — the database, the ingest
pipeline and the mail reader — rather than the whole Hub, so it can be
built and tested without one and its dependencies are visible in one line.
"""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from channels.email.inbound import MailReader
from channels.email.limits import HEADER_ONLY
from hub.ingest.context import Prepared
from hub.ingest.pipeline import IngestError, Ingestor
from hub.store.db import Database
from hub.store.models import QuarantineStatus, utcnow
from hub.store.tables import quarantine_t


@dataclass(frozen=True, slots=True)
class Held:
    id: int
    mailbox: str
    folder: str
    uid: int
    status: str
    attempts: int
    error: str
    created_at: datetime
    sender: str
    subject: str
    size: int


@dataclass(slots=True)
class RetryReport:
    released: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)


def _peek(raw: bytes) -> tuple[str, str]:
    """From and Subject for the listing; a message broken enough to be here may lack both."""
    try:
        msg = email.message_from_bytes(raw[:65536], policy=email.policy.compat32)
        return str(msg.get("From", "") or "")[:80], str(msg.get("Subject", "") or "")[:80]
    except Exception:
        return "", ""


class Quarantine:
    """List, show and retry the held messages."""

    def __init__(self, db: Database, ingestor: Ingestor, reader: MailReader) -> None:
        self.db = db
        self.ingestor = ingestor
        self.reader = reader

    async def list_held(self, *, include_released: bool = False) -> list[Held]:
        query = select(quarantine_t).order_by(quarantine_t.c.id)
        if not include_released:
            query = query.where(quarantine_t.c.status == QuarantineStatus.HELD.value)
        async with self.db.read() as s:
            conn = await s.connection()
            rows = (await conn.execute(query)).all()
        out = []
        for row in rows:
            sender, subject = _peek(row.raw)
            out.append(
                Held(
                    id=row.id,
                    mailbox=row.mailbox,
                    folder=row.folder,
                    uid=row.uid,
                    status=row.status,
                    attempts=row.attempts,
                    error=row.error,
                    created_at=row.created_at,
                    sender=sender,
                    subject=subject,
                    size=len(row.raw),
                )
            )
        return out

    async def raw_of(self, quarantine_id: int) -> bytes | None:
        async with self.db.read() as s:
            conn = await s.connection()
            raw = (
                await conn.execute(
                    select(quarantine_t.c.raw).where(quarantine_t.c.id == quarantine_id)
                )
            ).scalar()
        return bytes(raw) if raw is not None else None

    async def retry(self, ids: list[int] | None) -> RetryReport:
        """Retry the held messages `ids` (None: all held). Unknown or released ids are failures."""
        query = select(quarantine_t).where(quarantine_t.c.status == QuarantineStatus.HELD.value)
        if ids is not None:
            query = query.where(quarantine_t.c.id.in_(ids))
        async with self.db.read() as s:
            conn = await s.connection()
            rows = (await conn.execute(query.order_by(quarantine_t.c.id))).all()
        report = RetryReport()
        found = {row.id for row in rows}
        for missing in sorted(set(ids or ()) - found):
            report.failed[missing] = "no held message with this id"
        for row in rows:
            error = await self._retry_one(row)
            if error is None:
                report.released.append(row.id)
            else:
                report.failed[row.id] = f"still held: {error}"
        return report

    async def _retry_one(self, row: Any) -> str | None:
        if str(row.error).startswith(HEADER_ONLY):
            # Only the header is here; storing it would record an empty message.
            await self._still_held(row.id, str(row.error))
            return str(row.error)
        try:
            contact = await self.reader.read(
                bytes(row.raw),
                mailbox=row.mailbox,
                folder=row.folder,
                uid=row.uid,
                # When it arrived, for a message whose Date header is missing or broken.
                received_at=row.created_at,
            )
            prepared = self.ingestor.prepare(contact)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc)
            await self._still_held(row.id, error)
            return error

        async def release(conn: AsyncConnection, items: list[Prepared]) -> None:
            result = items[0].result
            await conn.execute(
                update(quarantine_t)
                .where(quarantine_t.c.id == row.id)
                .where(quarantine_t.c.status == QuarantineStatus.HELD.value)
                .values(
                    status=QuarantineStatus.RELEASED.value,
                    interaction_id=result.interaction_id if result else None,
                    attempts=quarantine_t.c.attempts + 1,
                    updated_at=utcnow(),
                )
            )

        try:
            await self.ingestor.ingest_unit([prepared], release)
        except IngestError as exc:
            await self._still_held(row.id, str(exc))
            return str(exc)
        return None

    async def _still_held(self, quarantine_id: int, error: str) -> None:
        async with self.db.write() as s:
            conn = await s.connection()
            await conn.execute(
                update(quarantine_t)
                .where(quarantine_t.c.id == quarantine_id)
                .values(
                    error=error[:2000], attempts=quarantine_t.c.attempts + 1, updated_at=utcnow()
                )
            )
