"""Shared pieces of the IMAP tests against the real Dovecot (test_imap_client.py,
test_imap_sync.py): messages, configs, a store standing in for the hub, and
helpers to run a sync and wait for it.

The store stands in for the hub: it keeps messages by Message-ID (the hub's
idempotency key) together with the checkpoint, and can be told that the
database is away.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from typing import Any

import pytest

from channels.email.config import ImapConfig
from channels.email.imap import FetchedMessage
from channels.email.imap_sync import MailboxSync, StoreUnavailable
from tests.support.dovecot import ImapServer, session

WAIT = 30.0  # generous: a bound on a hang, never a measurement
SYNC_LOG = "channels.email.imap_sync"


def mail(tag: str, i: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"kunde{i}@example.org"
    msg["To"] = "service@example.com"
    msg["Subject"] = f"Anfrage {i}"
    msg["Message-ID"] = f"<{tag}-{i}@example.org>"
    msg.set_content(f"Nachricht {i}\n")
    return bytes(msg)


def ids(tag: str, numbers: range) -> list[str]:
    return [f"<{tag}-{i}@example.org>" for i in numbers]


class MemoryStore:
    """Messages by Message-ID plus the checkpoint per folder, committed together."""

    def __init__(self) -> None:
        self.messages: dict[str, bytes] = {}
        self.checkpoint: dict[str, tuple[int, int]] = {}
        self.calls: list[tuple[str, int, list[int], bool]] = []
        self.duplicates = 0  # known Message-IDs delivered outside a resync
        self.fail = False
        self.failures = 0
        self.on_store: Callable[[int], Any] | None = None

    async def checkpoints(self, folder: str) -> tuple[int, int] | None:
        return self.checkpoint.get(folder)

    async def store(
        self, folder: str, uidvalidity: int, messages: list[FetchedMessage], resync: bool
    ) -> None:
        if self.fail:
            self.failures += 1
            raise StoreUnavailable("database is away")
        self.calls.append((folder, uidvalidity, [m.uid for m in messages], resync))
        for m in messages:
            mid = BytesHeaderParser().parsebytes(m.raw)["Message-ID"]
            if mid in self.messages and not resync:
                self.duplicates += 1
            self.messages.setdefault(mid, m.raw)
        self.checkpoint[folder] = (uidvalidity, max((m.uid for m in messages), default=0))
        if self.on_store is not None:
            await self.on_store(len(self.calls))

    @property
    def ids(self) -> list[str]:
        return list(self.messages)


def config(server: ImapServer, user: str, **overrides: Any) -> ImapConfig:
    values: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "tls": "none",
        "user": user,
        "timeout": 5.0,
        "mode": "poll",
        "poll_seconds": 0.2,
        "reconnect_min_seconds": 0.05,
        "reconnect_max_seconds": 0.2,
    }
    values.update(overrides)
    return ImapConfig(**values)


def new_user() -> str:
    return f"u{uuid.uuid4().hex[:12]}@example.com"


def make_sync(
    server: ImapServer, store: MemoryStore, cfg: ImapConfig, **kwargs: Any
) -> MailboxSync:
    return MailboxSync("support", cfg, server.password, store.checkpoints, store.store, **kwargs)


async def sync_round(server: ImapServer, store: MemoryStore, cfg: ImapConfig) -> int:
    """One sync on a fresh connection, as after a restart of the hub."""
    sync = make_sync(server, store, cfg)
    try:
        return await sync.sync_once()
    finally:
        await sync.stop()


@asynccontextmanager
async def running(sync: MailboxSync) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(sync.run())
    try:
        yield task
    finally:
        await sync.stop()
        await task


async def until(sync: MailboxSync, predicate: Callable[[], bool]) -> None:
    await asyncio.wait_for(sync.wait_until(predicate), WAIT)


def uidvalidity(server: ImapServer, user: str, folder: str) -> int:
    with session(server, user) as imap:
        return int(imap.folder_status(folder, ["UIDVALIDITY"])[b"UIDVALIDITY"])


def all_seen(flags: dict[int, tuple[bytes, ...]]) -> bool:
    return all(b"\\Seen" in f for f in flags.values())


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == SYNC_LOG and r.levelno == level]


def error_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == SYNC_LOG and r.levelno >= logging.ERROR]
