"""`Quarantine` built from its parts (database, ingestor, mail reader), with no Hub.

The CLI path is tested in test_quarantine.py; this shows the quarantine needs
nothing else, and that a retried message is read by the channel's reader
(where it was held, under `MetaKey`) before it is stored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from channels.base import Channel, MetaKey
from channels.email.attachments import AttachmentStore
from channels.email.inbound import MailReader
from hub.config import Settings
from hub.events.bus import EventBus
from hub.ingest.pipeline import Ingestor
from hub.mail.quarantine import Quarantine
from hub.records.teams import TeamRouter
from hub.store.db import Database
from hub.store.tables import interaction_t, quarantine_t
from routing.threading import ThreadConversation
from tests.support.mail import hold, message

pytestmark = pytest.mark.db

UNPARSEABLE = b"Subject: no sender\r\n\r\nbody\r\n"


async def _rows(db: Database) -> list[tuple[int, str, int, int | None]]:
    async with db.read() as s:
        conn = await s.connection()
        columns = (
            quarantine_t.c.id,
            quarantine_t.c.status,
            quarantine_t.c.attempts,
            quarantine_t.c.interaction_id,
        )
        rows = await conn.execute(select(*columns).order_by(quarantine_t.c.id))
        return [(r[0], r[1], r[2], r[3]) for r in rows]


@pytest.fixture
async def quarantine(settings: Settings, db: Database, tmp_path: Path) -> AsyncIterator[Quarantine]:
    teams = await TeamRouter.load(db, settings.teams, "DE")
    ingestor = Ingestor(db, EventBus(), {Channel.EMAIL: [ThreadConversation()]}, teams, region="DE")
    await ingestor.start()
    reader = MailReader(settings.email, AttachmentStore(tmp_path / "att"))
    try:
        yield Quarantine(db, ingestor, reader)
    finally:
        await ingestor.stop()


async def test_retry_reads_with_the_channel_reader_and_keeps_what_is_not_mail(
    quarantine: Quarantine, db: Database
) -> None:
    fixed = await hold(db, 4, message(4), "TypeError: a parser bug, since fixed")
    broken = await hold(db, 5, UNPARSEABLE, "no sender address")

    held = await quarantine.list_held()
    assert [(h.id, h.uid, h.sender, h.subject) for h in held] == [
        (fixed, 4, "kundin@example.org", "Frage 4"),
        (broken, 5, "", "no sender"),
    ]
    assert await quarantine.raw_of(broken) == UNPARSEABLE
    assert await quarantine.raw_of(999) is None

    report = await quarantine.retry(None)
    assert report.released == [fixed]
    assert report.failed == {
        broken: "still held: no sender address (From/Sender missing or unreadable)"
    }
    rows = await _rows(db)
    assert [(r[0], r[1], r[2]) for r in rows] == [(fixed, "released", 2), (broken, "held", 2)]
    async with db.read() as s:
        conn = await s.connection()
        stored = (await conn.execute(select(interaction_t.c.id, interaction_t.c.meta))).all()
    assert [iid for iid, _ in stored] == [rows[0][3]]
    meta = stored[0][1]
    assert (meta[MetaKey.MAILBOX], meta[MetaKey.FOLDER], meta[MetaKey.UID]) == (
        "support",
        "INBOX",
        4,
    )
    assert [h.id for h in await quarantine.list_held()] == [broken]
    assert [h.id for h in await quarantine.list_held(include_released=True)] == [fixed, broken]
