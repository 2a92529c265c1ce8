"""The hub's half of the IMAP sync without IMAP: chunks, refusals and database outages.

MailStore.store gets fetched messages as the sync hands them over; these
tests poison one message's routing, or kill the database connection under
it, and check exactly what is stored, held and checkpointed.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, text

from channels.base import InboundContact
from channels.email.imap import FetchedMessage
from channels.email.imap_sync import StoreUnavailable
from hub.config import DatabaseConfig, Settings
from hub.mail.store import MailStore
from hub.runtime import Hub
from hub.store.db import Database
from hub.store.tables import checkpoint_t, interaction_t, quarantine_t
from routing.base import Decision, RoutingContext
from tests.support.hubs import make_settings
from tests.support.mail import SECRET, message

pytestmark = pytest.mark.db


class Poison:
    """Routing that fails for one Message-ID (a bug, or a row the database refuses)."""

    name = "poison"
    description = "raise for <m2@example.org>"

    async def process(
        self, contact: InboundContact, decision: Decision, ctx: RoutingContext
    ) -> None:
        if contact.provider_id == "<m2@example.org>":
            raise RuntimeError("poisoned")


class DropConnection:
    """Kills its own PostgreSQL backend mid-transaction, `times` times (a restart, a failover)."""

    name = "drop_connection"
    description = "pg_terminate_backend(pg_backend_pid()) while routing <m2@example.org>"
    times = 0

    async def process(
        self, contact: InboundContact, decision: Decision, ctx: RoutingContext
    ) -> None:
        if contact.provider_id == "<m2@example.org>" and DropConnection.times > 0:
            DropConnection.times -= 1
            await ctx.conn.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))  # type: ignore[attr-defined]


def _settings(db_url: str, tmp_path: Path, step: str) -> Settings:
    settings = make_settings(
        db_url,
        email={
            "attachments_dir": str(tmp_path / "attachments"),
            "reply_token_secret": SECRET,
            "mailboxes": [{"name": "support", "address": "support@example.com"}],
        },
    )
    # A step given in code (extra_steps) cannot be named in a config file.
    email = [step, "thread_conversation"]
    pipelines = settings.routing.pipelines.model_copy(update={"email": email})
    routing = settings.routing.model_copy(update={"pipelines": pipelines})
    return settings.model_copy(update={"routing": routing})


async def _hub(settings: Settings) -> AsyncIterator[tuple[Hub, MailStore]]:
    hub = Hub(settings, extra_steps={"poison": Poison, "drop_connection": DropConnection})
    await hub.start()
    mailbox = settings.email.mailboxes[0]
    try:
        yield hub, MailStore(hub.db, hub.ingestor, mailbox, settings.email, hub.attachments)
    finally:
        await hub.stop()


def _chunk() -> list[FetchedMessage]:
    return [FetchedMessage(uid, message(uid), datetime.now(UTC)) for uid in (1, 2, 3)]


async def _state(hub: Hub) -> tuple[list[str], list[tuple[int, str]], list[tuple[int, int]]]:
    async with hub.db.read() as s:
        conn = await s.connection()
        stored = (
            await conn.execute(select(interaction_t.c.provider_id).order_by(interaction_t.c.id))
        ).scalars()
        held = await conn.execute(
            select(quarantine_t.c.uid, quarantine_t.c.error).order_by(quarantine_t.c.uid)
        )
        checkpoint = await conn.execute(select(checkpoint_t.c.uidvalidity, checkpoint_t.c.last_uid))
        return list(stored), [tuple(r) for r in held], [tuple(r) for r in checkpoint]  # type: ignore[misc]


@pytest.fixture
async def poisoned(
    db_url: str, db: Database, tmp_path: Path
) -> AsyncIterator[tuple[Hub, MailStore]]:
    async for pair in _hub(_settings(db_url, tmp_path, "poison")):
        yield pair


@pytest.fixture
async def dropping(
    db_url: str, db: Database, tmp_path: Path
) -> AsyncIterator[tuple[Hub, MailStore]]:
    if db.sqlite:
        pytest.skip("kills a PostgreSQL backend; SQLite has no connection to lose")
    async for pair in _hub(_settings(db_url, tmp_path, "drop_connection")):
        yield pair


async def test_a_refused_chunk_is_stored_one_by_one_and_only_the_culprit_held(
    poisoned: tuple[Hub, MailStore], caplog: pytest.LogCaptureFixture
) -> None:
    hub, store = poisoned
    caplog.set_level(logging.INFO, logger="hub.mail.store")
    await store.store("INBOX", 7, _chunk(), False)
    assert await _state(hub) == (
        ["<m1@example.org>", "<m3@example.org>"],
        [(2, "RuntimeError: poisoned")],
        [(7, 3)],
    )
    assert store.quarantined == 1
    messages = [r.getMessage() for r in caplog.records if r.name == "hub.mail.store"]
    assert messages == [
        "mailbox support: chunk refused (RuntimeError: poisoned); storing one by one",
        "mailbox support: INBOX UID 2 quarantined: RuntimeError: poisoned",
    ]


async def test_a_dropped_connection_stores_nothing_and_is_retried_not_quarantined(
    dropping: tuple[Hub, MailStore],
) -> None:
    hub, store = dropping
    DropConnection.times = 2
    for _ in range(2):  # the database "restarts" twice under the chunk
        with pytest.raises(StoreUnavailable):
            await store.store("INBOX", 7, _chunk(), False)
        assert await _state(hub) == ([], [], [])
    await store.store("INBOX", 7, _chunk(), False)
    assert await _state(hub) == (
        ["<m1@example.org>", "<m2@example.org>", "<m3@example.org>"],
        [],
        [(7, 3)],
    )
    assert store.quarantined == 0


async def test_a_database_away_at_the_checkpoint_read_is_an_outage(
    poisoned: tuple[Hub, MailStore], tmp_path: Path
) -> None:
    # The checkpoint is the first thing every sync round asks the database:
    # its absence must be "try later" (keep the IMAP session), not a crash.
    hub, store = poisoned
    url = (
        f"sqlite+aiosqlite:///{tmp_path}"  # a directory: SQLite cannot open it
        if hub.db.sqlite
        else "postgresql+asyncpg://postgres@127.0.0.1:1/crmhub"
    )
    away = Database(DatabaseConfig(url=url))
    try:
        blind = MailStore(away, hub.ingestor, store.mailbox, store.email, store.attachments)
        with pytest.raises(StoreUnavailable, match="database unavailable"):
            await blind.checkpoint("INBOX")
    finally:
        await away.close()
