"""IMAP into the history through the hub: real Dovecot, real database, exactly once.

The sync itself (IDLE, reconnects, UIDVALIDITY) is tested at channel level in
test_imap_sync.py; here the hub's half: messages and checkpoint in one
commit, the quarantine, resync without duplicates, and `crmhub serve`'s
runner reading a mailbox through an outage.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from imapclient import IMAPClient
from sqlalchemy import select

from channels.email.imap_sync import MailboxSync
from hub.mail.runner import MailboxRunner
from hub.mail.store import MailStore
from hub.runtime import Hub
from hub.store.db import Database
from hub.store.tables import interaction_t, quarantine_t
from tests.support.dovecot import ImapServer
from tests.support.mail import (
    PASSWORD_ENV,
    append,
    checkpoint,
    eventually,
    folder_flags,
    mail_settings,
    message,
    new_user,
    provider_ids,
    quarantine_count,
)

pytestmark = pytest.mark.db


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch, dovecot: ImapServer) -> None:
    monkeypatch.setenv(PASSWORD_ENV, dovecot.password)


@pytest.fixture
def user() -> str:
    return new_user()


@pytest.fixture
async def mail_hub(
    db_url: str,
    db: Database,
    dovecot: ImapServer,
    user: str,
    tmp_path: Path,
) -> AsyncIterator[Hub]:
    hub = Hub(mail_settings(db_url, dovecot, user, tmp_path))
    await hub.start()
    yield hub
    await hub.stop()


def _sync(hub: Hub) -> tuple[MailStore, MailboxSync]:
    mailbox = hub.settings.email.mailboxes[0]
    assert mailbox.imap is not None
    store = MailStore(hub.db, hub.ingestor, mailbox, hub.settings.email, hub.attachments)
    sync = MailboxSync(
        mailbox.name, mailbox.imap, mailbox.imap.password(), store.checkpoint, store.store
    )
    return store, sync


async def test_first_and_incremental_sync_store_each_message_once(
    mail_hub: Hub,
    dovecot: ImapServer,
    user: str,
) -> None:
    append(dovecot, user, "INBOX", *(message(n) for n in range(1, 6)))
    _store, sync = _sync(mail_hub)
    try:
        assert await sync.sync_once() == 5
        assert await provider_ids(mail_hub) == [f"<m{n}@example.org>" for n in range(1, 6)]
        uidvalidity, last_uid = await checkpoint(mail_hub) or (0, 0)
        assert last_uid == 5
        # Flagged only after the commit, and all of them.
        assert all(b"\\Seen" in f for f in folder_flags(dovecot, user, "INBOX").values())

        assert await sync.sync_once() == 0  # UID 6:* returns UID 5: filtered
        append(dovecot, user, "INBOX", message(6), message(7))
        assert await sync.sync_once() == 2
        assert await provider_ids(mail_hub) == [f"<m{n}@example.org>" for n in range(1, 8)]
        assert await checkpoint(mail_hub) == (uidvalidity, 7)
    finally:
        await sync.stop()


async def test_metadata_says_where_each_message_came_from(
    mail_hub: Hub,
    dovecot: ImapServer,
    user: str,
) -> None:
    append(dovecot, user, "INBOX", message(1))
    _store, sync = _sync(mail_hub)
    try:
        await sync.sync_once()
    finally:
        await sync.stop()
    async with mail_hub.db.read() as s:
        conn = await s.connection()
        row = (await conn.execute(select(interaction_t))).one()
    assert (row.direction, row.sender, row.subject, row.text) == (
        "in",
        "kundin@example.org",
        "Frage 1",
        "Nachricht Nummer 1",
    )
    assert (row.meta["mailbox"], row.meta["folder"], row.meta["uid"]) == ("support", "INBOX", 1)


async def test_broken_message_is_quarantined_and_does_not_block_the_rest(
    mail_hub: Hub,
    dovecot: ImapServer,
    user: str,
) -> None:
    no_sender = b"Subject: who am I\r\nMessage-ID: <nosender@x>\r\n\r\nno From header\r\n"
    append(dovecot, user, "INBOX", message(1), no_sender, message(3))
    store, sync = _sync(mail_hub)
    try:
        assert await sync.sync_once() == 3
    finally:
        await sync.stop()
    assert await provider_ids(mail_hub) == ["<m1@example.org>", "<m3@example.org>"]
    assert (await checkpoint(mail_hub) or (0, 0))[1] == 3
    assert store.quarantined == 1
    async with mail_hub.db.read() as s:
        conn = await s.connection()
        row = (await conn.execute(select(quarantine_t))).one()
    assert (row.mailbox, row.folder, row.uid, row.status, row.attempts) == (
        "support",
        "INBOX",
        2,
        "held",
        1,
    )
    assert bytes(row.raw).replace(b"\r\n", b"\n") == no_sender.replace(b"\r\n", b"\n")
    assert row.error == "no sender address (From/Sender missing or unreadable)"


async def test_a_message_ingest_refuses_is_quarantined_alone(
    mail_hub: Hub,
    dovecot: ImapServer,
    user: str,
) -> None:
    # A Message-ID longer than any provider id we store: ingest refuses it
    # before the chunk's transaction, which stores the others and holds it.
    # (A refusal inside the transaction: tests/test_mail_store.py.)
    too_long = message(2, **{"Message-ID": "<" + "x" * 600 + "@example.org>"})
    append(dovecot, user, "INBOX", message(1), too_long, message(3))
    _store, sync = _sync(mail_hub)
    try:
        await sync.sync_once()
    finally:
        await sync.stop()
    assert await provider_ids(mail_hub) == ["<m1@example.org>", "<m3@example.org>"]
    assert await quarantine_count(mail_hub) == 1
    assert (await checkpoint(mail_hub) or (0, 0))[1] == 3


async def test_uidvalidity_change_resyncs_without_duplicates(
    mail_hub: Hub,
    dovecot: ImapServer,
    user: str,
) -> None:
    settings = mail_hub.settings
    assert settings.email.mailboxes[0].imap is not None
    settings.email.mailboxes[0].imap.folders = ["Support"]
    append(dovecot, user, "Support", message(1), message(2))
    _store, sync = _sync(mail_hub)
    try:
        assert await sync.sync_once() == 2
        before = await checkpoint(mail_hub, "Support")
        assert before is not None
        with IMAPClient(dovecot.host, dovecot.port, ssl=False, timeout=10) as imap:
            imap.login(user, dovecot.password)
            imap.delete_folder("Support")
        # Same folder name, new UIDVALIDITY: the two old ones again and a new one.
        append(dovecot, user, "Support", message(1), message(2), message(3))
        await sync.stop()
        _store, sync = _sync(mail_hub)
        await sync.sync_once()
    finally:
        await sync.stop()
    assert await provider_ids(mail_hub) == [f"<m{n}@example.org>" for n in (1, 2, 3)]
    after = await checkpoint(mail_hub, "Support")
    assert after is not None and after[0] != before[0] and after[1] == 3


async def test_serve_idles_on_the_mailbox_through_a_dovecot_restart(
    db_url: str,
    db: Database,
    dovecot: ImapServer,
    user: str,
    tmp_path: Path,
) -> None:
    # IDLE, with polling and renewal far beyond the wait: after the restart only
    # IDLE can bring the new messages in time.
    settings = mail_settings(
        db_url, dovecot, user, tmp_path, mode="idle", poll_seconds=600, idle_renew_seconds=600
    )
    hub = Hub(settings, read_mail=True)
    await hub.start()
    try:
        append(
            dovecot, user, "INBOX", *[message(n, sender=f"k{n}@example.org") for n in range(1, 21)]
        )
        await eventually(lambda: _count_at_least(hub, 20))
        await asyncio.to_thread(dovecot.stop_and_disconnect)
        try:
            [runner] = hub.mail_runners
            await eventually(lambda: _lost(runner.sync))
            rounds = runner.sync.rounds
        finally:
            await asyncio.to_thread(dovecot.start)
        # A full round after the reconnect: the sync is idling again.
        await eventually(lambda: _round_after(runner.sync, rounds))
        append(
            dovecot, user, "INBOX", *[message(n, sender=f"k{n}@example.org") for n in range(21, 31)]
        )
        await eventually(lambda: _count_at_least(hub, 30))
        assert runner.sync.idle_wakeups >= 1
    finally:
        await hub.stop()
    ids = await provider_ids(hub)
    assert ids == [f"<m{n}@example.org>" for n in range(1, 31)]
    assert (await checkpoint(hub) or (0, 0))[1] == 30


async def _count_at_least(hub: Hub, n: int) -> bool:
    return len(await provider_ids(hub)) >= n


async def _round_after(sync: MailboxSync, rounds: int) -> bool:
    return sync.rounds > rounds and sync.outages == 1


async def _lost(sync: MailboxSync) -> bool:
    return sync.outages >= 1


async def test_one_node_reads_a_mailbox_and_another_takes_over(
    mail_hub: Hub,
    dovecot: ImapServer,
    user: str,
) -> None:
    if mail_hub.db.sqlite:
        pytest.skip("SQLite is one node; the per-mailbox advisory lock is PostgreSQL's")
    mailbox = mail_hub.settings.email.mailboxes[0]
    email = mail_hub.settings.email
    # Two nodes: each has its own database pool, like two `crmhub serve` processes.
    other_db = Database(mail_hub.settings.database)
    first = MailboxRunner(mail_hub.db, mail_hub.ingestor, mailbox, email, mail_hub.attachments)
    second = MailboxRunner(other_db, mail_hub.ingestor, mailbox, email, mail_hub.attachments)
    second.lock_retry_seconds = 0.1
    try:
        await first.start()
        await eventually(lambda: _holding(first))
        await second.start()
        append(dovecot, user, "INBOX", message(1))
        await eventually(lambda: _count_at_least(mail_hub, 1))
        assert (first.holding, second.holding) == (True, False)
        await first.stop()
        await eventually(lambda: _holding(second))
        append(dovecot, user, "INBOX", message(2))
        await eventually(lambda: _count_at_least(mail_hub, 2))
    finally:
        await first.stop()
        await second.stop()
        await other_db.close()
    assert await provider_ids(mail_hub) == ["<m1@example.org>", "<m2@example.org>"]


async def _holding(runner: MailboxRunner) -> bool:
    return runner.holding


async def test_a_crashed_sync_is_logged_once_and_restarted(
    mail_hub: Hub,
    dovecot: ImapServer,
    user: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    mailbox = mail_hub.settings.email.mailboxes[0]
    runner = MailboxRunner(
        mail_hub.db, mail_hub.ingestor, mailbox, mail_hub.settings.email, mail_hub.attachments
    )
    real_sync = runner._new_sync
    made: list[MailboxSync] = []

    def first_one_crashes() -> MailboxSync:
        sync = real_sync()
        if not made:

            async def bug() -> None:
                raise RuntimeError("a bug in a round")

            sync.run = bug  # type: ignore[method-assign]
        made.append(sync)
        return sync

    runner._new_sync = first_one_crashes  # type: ignore[method-assign]
    append(dovecot, user, "INBOX", message(1))
    await runner.start()
    try:
        await eventually(lambda: _count_at_least(mail_hub, 1))
    finally:
        await runner.stop()
    assert await provider_ids(mail_hub) == ["<m1@example.org>"]
    crashes = [r for r in caplog.records if "the sync crashed" in r.getMessage()]
    assert len(made) >= 2 and len(crashes) == 1
    assert crashes[0].levelname == "ERROR" and crashes[0].exc_info is not None
