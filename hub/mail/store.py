"""IMAP messages into the history, exactly once: contacts and checkpoint in one commit.

The IMAP sync (channels/email/imap_sync.py) hands over a chunk of fetched
messages; here each is read into a contact by the channel (channels/email/
inbound.py: the hub never parses mail), validated and stored through the ingest
pipeline as one unit together with the folder's checkpoint. So after any
crash, a UID at or below the checkpoint is in the history (or in the
quarantine), and a UID above it is not: the next run fetches exactly the
rest. Re-fetched messages (a UIDVALIDITY resync) are deduplicated by ingest
on their Message-ID (or the digest id parse_message makes when it is missing).

A message that cannot be parsed or stored goes to the quarantine, raw, in
the same transaction as the checkpoint that passes it: it never blocks the
mail behind it and is never lost (`crmhub quarantine list|retry`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, case, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from channels.base import InboundContact
from channels.email.attachments import AttachmentStore
from channels.email.config import EmailConfig, MailboxConfig
from channels.email.imap import FetchedMessage
from channels.email.imap_sync import StoreUnavailable
from channels.email.inbound import MailReader, UnparseableEmail
from channels.email.limits import HEADER_ONLY
from hub.ingest.context import Prepared
from hub.ingest.pipeline import IngestError, Ingestor, IngestUnavailable, UnitWrite
from hub.store.db import Database, is_outage
from hub.store.models import QuarantineStatus, utcnow
from hub.store.tables import checkpoint_t, quarantine_t

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Quarantined:
    message: FetchedMessage
    error: str


class MailStore:
    """The hub's side of one mailbox's sync: checkpoints, storing, quarantining."""

    def __init__(
        self,
        db: Database,
        ingestor: Ingestor,
        mailbox: MailboxConfig,
        email: EmailConfig,
        attachments: AttachmentStore,
        reader: MailReader | None = None,
    ) -> None:
        self.db = db
        self.ingestor = ingestor
        self.mailbox = mailbox
        self.email = email
        self.attachments = attachments
        self.reader = reader or MailReader(email, attachments)
        self.quarantined = 0  # for tests and the benchmark

    async def checkpoint(self, folder: str) -> tuple[int, int] | None:
        """The folder's committed (uidvalidity, last UID); StoreUnavailable when the
        database is away (the first thing every round asks it)."""
        try:
            async with self.db.read() as s:
                conn = await s.connection()
                row = (
                    await conn.execute(
                        select(checkpoint_t.c.uidvalidity, checkpoint_t.c.last_uid)
                        .where(checkpoint_t.c.mailbox == self.mailbox.name)
                        .where(checkpoint_t.c.folder == folder)
                    )
                ).first()
        except Exception as exc:
            if is_outage(exc):
                raise StoreUnavailable(f"database unavailable: {exc}") from exc
            raise
        return (int(row.uidvalidity), int(row.last_uid)) if row is not None else None

    async def store(
        self, folder: str, uidvalidity: int, messages: Sequence[FetchedMessage], resync: bool
    ) -> None:
        """Store a chunk (in UID order) and move the checkpoint to its last UID, atomically.

        Raises StoreUnavailable when the database is away: nothing is stored
        then, and the sync keeps the messages unflagged for a later try.
        """
        if not messages:
            if resync:  # a folder recreated empty: remember its new UIDVALIDITY
                await self._checkpoint_only(folder, uidvalidity, 0)
            return
        ordered = sorted(messages, key=lambda m: m.uid)
        good: list[tuple[FetchedMessage, Prepared]] = []
        bad: list[Quarantined] = []
        ids: set[str] = set()
        # Parsed in the reader's worker processes, all of the chunk at once (the
        # pool bounds how many run); the event loop only waits.
        read = await asyncio.gather(*(self._read(folder, m) for m in ordered))
        for message, outcome in zip(ordered, read, strict=True):
            if isinstance(outcome, Quarantined):
                bad.append(outcome)
                continue
            contact, prepared = outcome
            # The same Message-ID twice in one chunk: the first stands for both.
            if contact.provider_id in ids:
                log.info(
                    "mailbox %s: %s UID %s repeats %s; stored once",
                    self.mailbox.name,
                    folder,
                    message.uid,
                    contact.provider_id,
                )
                continue
            if contact.provider_id:
                ids.add(contact.provider_id)
            good.append((message, prepared))
        last_uid = ordered[-1].uid
        try:
            await self.ingestor.ingest_unit(
                [p for _, p in good],
                self._extra(folder, uidvalidity, last_uid, bad),
            )
        except IngestUnavailable as exc:
            raise StoreUnavailable(str(exc)) from exc
        except IngestError as exc:
            # Something in the chunk cannot be stored: find it by storing the
            # messages one by one, each with its own checkpoint step.
            log.info("mailbox %s: chunk refused (%s); storing one by one", self.mailbox.name, exc)
            await self._one_by_one(folder, uidvalidity, good, bad)
        else:
            self.quarantined += len(bad)
            for item in bad:
                self._log_quarantine(folder, item)

    async def _read(
        self, folder: str, message: FetchedMessage
    ) -> tuple[InboundContact, Prepared] | Quarantined:
        """The message as a prepared contact, or why it goes to the quarantine."""
        if message.size is not None:
            limit = self.reader.limits.max_message_bytes
            return Quarantined(
                message,
                f"{HEADER_ONLY}message of {message.size} bytes is over the limit of "
                f"{limit} bytes; the whole message stays in the mailbox",
            )
        try:
            contact = await self.reader.read(
                message.raw,
                mailbox=self.mailbox.name,
                folder=folder,
                uid=message.uid,
                received_at=message.internaldate,
            )
            return contact, self.ingestor.prepare(contact)
        except (UnparseableEmail, IngestError) as exc:
            return Quarantined(message, str(exc))
        except Exception as exc:  # a bug must not stop the mailbox
            log.exception("mailbox %s: reading UID %s failed", self.mailbox.name, message.uid)
            return Quarantined(message, f"{type(exc).__name__}: {exc}")

    async def _one_by_one(
        self,
        folder: str,
        uidvalidity: int,
        good: list[tuple[FetchedMessage, Prepared]],
        bad: list[Quarantined],
    ) -> None:
        steps: list[tuple[int, Prepared | None, Quarantined | None]] = [
            (m.uid, p, None) for m, p in good
        ] + [(q.message.uid, None, q) for q in bad]
        for uid, prepared, quarantined in sorted(steps, key=lambda s: s[0]):
            try:
                if prepared is not None:
                    try:
                        await self.ingestor.ingest_unit(
                            [prepared], self._extra(folder, uidvalidity, uid, [])
                        )
                        continue
                    except IngestError as exc:
                        message = next(m for m, p in good if p is prepared)
                        quarantined = Quarantined(message, str(exc))
                assert quarantined is not None
                await self.ingestor.ingest_unit(
                    [], self._extra(folder, uidvalidity, uid, [quarantined])
                )
                self.quarantined += 1
                self._log_quarantine(folder, quarantined)
            except IngestUnavailable as exc:
                raise StoreUnavailable(str(exc)) from exc
            except IngestError as exc:
                # Not even the quarantine row and checkpoint could be written:
                # that is the database's problem, not the message's. Keep the
                # message unflagged and try the chunk again later.
                log.error("mailbox %s: cannot quarantine UID %s: %s", self.mailbox.name, uid, exc)
                raise StoreUnavailable(str(exc)) from exc

    def _log_quarantine(self, folder: str, item: Quarantined) -> None:
        log.warning(
            "mailbox %s: %s UID %s quarantined: %s",
            self.mailbox.name,
            folder,
            item.message.uid,
            item.error,
        )

    def _extra(
        self,
        folder: str,
        uidvalidity: int,
        last_uid: int,
        bad: list[Quarantined],
    ) -> UnitWrite:
        async def write(conn: AsyncConnection, _items: list[Prepared]) -> None:
            for item in bad:
                await self._quarantine(conn, folder, uidvalidity, item)
            await self._advance(conn, folder, uidvalidity, last_uid)

        return write

    async def _quarantine(
        self,
        conn: AsyncConnection,
        folder: str,
        uidvalidity: int,
        item: Quarantined,
    ) -> None:
        now = utcnow()
        same_place = and_(
            quarantine_t.c.mailbox == self.mailbox.name,
            quarantine_t.c.folder == folder,
        )
        # A resync fetches every message again under a new UIDVALIDITY (and a
        # crash mid-resync continues it without knowing): a message already
        # held must not be held twice, so compare the bytes. Quarantining is
        # rare; the cost of this scan does not matter.
        found = (
            await conn.execute(
                select(quarantine_t.c.id).where(same_place, quarantine_t.c.raw == item.message.raw)
            )
        ).first()
        if found is not None:
            return
        await conn.execute(
            quarantine_t.insert().values(
                mailbox=self.mailbox.name,
                folder=folder,
                uidvalidity=uidvalidity,
                uid=item.message.uid,
                raw=item.message.raw,
                error=item.error[:2000],
                status=QuarantineStatus.HELD.value,
                attempts=1,
                created_at=now,
                updated_at=now,
            )
        )

    async def _checkpoint_only(self, folder: str, uidvalidity: int, last_uid: int) -> None:
        async def write(conn: AsyncConnection, _items: list[Prepared]) -> None:
            await self._advance(conn, folder, uidvalidity, last_uid)

        try:
            await self.ingestor.ingest_unit([], write)
        except IngestUnavailable as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def _advance(
        self, conn: AsyncConnection, folder: str, uidvalidity: int, last_uid: int
    ) -> None:
        """Checkpoint := (uidvalidity, last_uid); never backwards within one UIDVALIDITY."""
        now = utcnow()
        changed = await conn.execute(
            update(checkpoint_t)
            .where(checkpoint_t.c.mailbox == self.mailbox.name)
            .where(checkpoint_t.c.folder == folder)
            .values(
                last_uid=case(
                    (
                        and_(
                            checkpoint_t.c.uidvalidity == uidvalidity,
                            checkpoint_t.c.last_uid > last_uid,
                        ),
                        checkpoint_t.c.last_uid,
                    ),
                    else_=last_uid,
                ),
                uidvalidity=uidvalidity,
                updated_at=now,
            )
        )
        if changed.rowcount == 0:
            await conn.execute(
                checkpoint_t.insert().values(
                    mailbox=self.mailbox.name,
                    folder=folder,
                    uidvalidity=uidvalidity,
                    last_uid=last_uid,
                    updated_at=now,
                )
            )
