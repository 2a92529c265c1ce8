"""Runs the IMAP sync of every configured mailbox inside `crmhub serve`.

With several nodes on one PostgreSQL, each mailbox is read by exactly one
node: the one holding a PostgreSQL advisory lock keyed by the mailbox name
(DESIGN.md). The lock lives on a connection of its own, held while the sync
runs; if that connection dies the lock is gone, so the sync stops and the
node competes for the lock again. Two readers would not duplicate anything
(ingest dedupes by Message-ID), but they would race on flags and moves.
SQLite is one node by construction and needs no lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from channels.email.attachments import AttachmentStore
from channels.email.config import EmailConfig, MailboxConfig
from channels.email.imap_sync import MailboxSync
from hub.ingest.pipeline import Ingestor
from hub.mail.store import MailStore
from hub.store.db import Database

log = logging.getLogger(__name__)

LOCK_CHECK_SECONDS = 5.0
LOCK_RETRY_SECONDS = 30.0


def lock_key(mailbox: str) -> int:
    """A stable signed 64-bit key for pg_advisory_lock (hash() differs per process)."""
    digest = hashlib.sha256(f"crmhub-mailbox:{mailbox}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class MailboxRunner:
    def __init__(
        self,
        db: Database,
        ingestor: Ingestor,
        mailbox: MailboxConfig,
        email: EmailConfig,
        attachments: AttachmentStore,
    ) -> None:
        assert mailbox.imap is not None
        self.db = db
        self.mailbox = mailbox
        self.imap = mailbox.imap
        self.store = MailStore(db, ingestor, mailbox, email, attachments)
        self.sync = self._new_sync()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # True while this node reads the mailbox (holds its lock on PostgreSQL).
        self.holding = False
        self.lock_retry_seconds = LOCK_RETRY_SECONDS
        self.lock_check_seconds = LOCK_CHECK_SECONDS

    def _new_sync(self) -> MailboxSync:
        return MailboxSync(
            self.mailbox.name,
            self.imap,
            self.imap.password(),
            self.store.checkpoint,
            self.store.store,
            max_message_bytes=self.store.reader.limits.max_message_bytes,
        )

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"mailbox-{self.mailbox.name}")

    async def stop(self) -> None:
        self._stopping = True
        await self.sync.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _supervised(self) -> None:
        """Run the sync until stopped; if it ever dies of a bug, log it and start a new
        one after a growing pause, so a crash neither stops the mailbox for good nor
        hammers the IMAP server with logins."""
        pause = self.imap.reconnect_min_seconds
        while not self._stopping:
            self.sync = self._new_sync()  # a stopped or crashed sync does not run again
            started = asyncio.get_running_loop().time()
            try:
                await self.sync.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                if asyncio.get_running_loop().time() - started > self.imap.reconnect_max_seconds:
                    pause = self.imap.reconnect_min_seconds  # it ran well for a while
                log.exception(
                    "mailbox %s: the sync crashed; restarting in %.0f s", self.mailbox.name, pause
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, self.imap.reconnect_max_seconds)

    async def _run(self) -> None:
        if self.db.sqlite:
            self.holding = True
            try:
                await self._supervised()
            finally:
                self.holding = False
            return
        # The lock lives on a connection outside the pool (NullPool): a mailbox
        # must not hold one of the pool's connections for as long as it is read.
        engine = create_async_engine(self.db.write_engine.url, poolclass=NullPool)
        try:
            await self._locked_loop(engine)
        finally:
            await engine.dispose()

    async def _locked_loop(self, engine: AsyncEngine) -> None:
        waiting_logged = False
        key = lock_key(self.mailbox.name)
        while not self._stopping:
            try:
                async with engine.connect() as raw:
                    conn = await raw.execution_options(isolation_level="AUTOCOMMIT")
                    got = (
                        await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})
                    ).scalar()
                    if got:
                        waiting_logged = False
                        log.info("mailbox %s: this node reads it", self.mailbox.name)
                        self.holding = True
                        try:
                            await self._sync_while_locked(conn)
                        finally:
                            self.holding = False
                            with contextlib.suppress(Exception):
                                await asyncio.wait_for(
                                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key}),
                                    self.lock_check_seconds,
                                )
                        if self._stopping:
                            return
                    elif not waiting_logged:
                        log.info("mailbox %s is read by another node", self.mailbox.name)
                        waiting_logged = True
                # The connection is closed before waiting: a node that does not
                # hold the mailbox holds no connection either.
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("mailbox %s: lost the database (%s); retrying", self.mailbox.name, exc)
            await asyncio.sleep(self.lock_retry_seconds)

    async def _sync_while_locked(self, conn: AsyncConnection) -> None:
        """Run the sync while the lock's connection answers.

        PostgreSQL frees the lock the moment that connection dies, and another
        node may start reading; checking it every few seconds keeps the
        overlap short. An overlap duplicates nothing (ingest dedupes by
        Message-ID, checkpoints never move back); only flags may race.
        """
        sync_task = asyncio.create_task(self._supervised())
        try:
            while not sync_task.done():
                done, _ = await asyncio.wait({sync_task}, timeout=self.lock_check_seconds)
                if done:
                    break
                try:
                    # Bounded: a lock connection that died silently (failover behind
                    # a virtual IP) would hang here for the kernel's ~15 min.
                    await asyncio.wait_for(conn.execute(text("SELECT 1")), self.lock_check_seconds)
                except Exception as exc:
                    log.warning(
                        "mailbox %s: lock connection lost (%s); stopping the sync",
                        self.mailbox.name,
                        exc,
                    )
                    raise
        finally:
            if not sync_task.done():
                await self.sync.stop()
                sync_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sync_task
