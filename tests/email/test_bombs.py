"""Hostile mail: every bomb is refused with its reason, costs one message, and the
mailbox flows on. The corpus is generated here (a few hundred KB at most in
memory, nothing on disk); each message is built to break one stage of
parsing, and the test proves the limit that guards that stage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from channels.email import AttachmentStore, MailReader, UnparseableEmail
from channels.email.config import EmailConfig
from channels.email.imap import FetchedMessage
from channels.email.imap_sync import MailboxSync
from channels.email.limits import MailLimits
from channels.email.parser_pool import ParseJob, ParserPool
from hub.mail.store import MailStore
from hub.runtime import Hub
from hub.store.db import Database
from hub.store.tables import checkpoint_t, interaction_t, quarantine_t
from tests.support.dovecot import ImapServer
from tests.support.hubs import make_settings
from tests.support.mail import PASSWORD_ENV, SECRET, append, mail_settings, message, new_user

HEAD = (
    b"From: Mallory <mallory@example.net>\r\nTo: support@example.com\r\n"
    b"Subject: hello\r\nMessage-ID: <bomb@example.net>\r\n"
)


def nested_quotes(depth: int) -> bytes:
    body = b"<blockquote>x" * depth + b"</blockquote>" * depth
    return HEAD + b"Content-Type: text/html\r\n\r\n" + body


def many_headers(count: int) -> bytes:
    return HEAD + b"".join(b"X-H%d: v\r\n" % i for i in range(count)) + b"\r\nbody\r\n"


def encoded_words(count: int) -> bytes:
    words = b" ".join(b"=?utf-8?q?a?=" for _ in range(count))
    return b"From: mallory@example.net\r\nSubject: " + words + b"\r\n\r\nbody\r\n"


def long_header(size: int) -> bytes:
    return HEAD + b"X-Long: " + b"a" * size + b"\r\n\r\nbody\r\n"


def many_parts(count: int, size: int = 2) -> bytes:
    parts = b"".join(
        b"--BB\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Disposition: attachment; filename=f%d.bin\r\n\r\n%s\r\n" % (i, b"%d" % i * size)
        for i in range(count)
    )
    return HEAD + b"Content-Type: multipart/mixed; boundary=BB\r\n\r\n" + parts + b"--BB--\r\n"


def deep_mime(depth: int) -> bytes:
    nested = b"".join(
        b"--B%d\r\nContent-Type: multipart/mixed; boundary=B%d\r\n\r\n" % (i, i + 1)
        for i in range(depth)
    )
    return HEAD + b"Content-Type: multipart/mixed; boundary=B0\r\n\r\n" + nested


def long_text(chars: int) -> bytes:
    return HEAD + b"\r\n" + b"word " * (chars // 5) + b"\r\n"


def reader(tmp_path: Path, **limits: Any) -> MailReader:
    email = EmailConfig(reply_token_secret=SECRET, limits=MailLimits(**limits))
    return MailReader(email, AttachmentStore(tmp_path / "att"))


async def read(r: MailReader, raw: bytes, uid: int = 1) -> Any:
    return await r.read(raw, mailbox="support", folder="INBOX", uid=uid)


BOMBS: list[tuple[str, Callable[[], bytes], str]] = [
    ("nested quotes", lambda: nested_quotes(2000), "quotes nested over the limit of 50 levels"),
    ("headers", lambda: many_headers(20_000), "20004 header fields, over the limit of 1000"),
    (
        "encoded words",
        lambda: encoded_words(5000),
        "5000 encoded words in headers, over the limit of 1000",
    ),
    (
        "long header line",
        lambda: long_header(10_000_000),
        "a header field of 10000008 bytes, over the limit of 100000",
    ),
    ("parts", lambda: many_parts(2000), "more than 500 MIME parts"),
    ("deep MIME", lambda: deep_mime(200), "MIME parts nested 21 deep, over the limit of 20"),
]


@pytest.mark.parametrize(
    ("raw", "reason"), [(b[1], b[2]) for b in BOMBS], ids=[b[0] for b in BOMBS]
)
async def test_each_bomb_is_refused_with_the_limit_it_passed(
    tmp_path: Path, raw: Callable[[], bytes], reason: str
) -> None:
    with pytest.raises(UnparseableEmail) as refused:
        await read(reader(tmp_path), raw())
    assert str(refused.value) == reason


async def test_size_text_and_attachment_limits_are_configurable(tmp_path: Path) -> None:
    small = reader(
        tmp_path,
        max_message_bytes=5000,
        max_text_chars=1000,
        max_attachment_bytes_per_message=3000,
    )
    big = message(1) + b"x" * 6000
    with pytest.raises(UnparseableEmail, match=f"^message of {len(big)} bytes is over the limit"):
        await read(small, big)
    with pytest.raises(UnparseableEmail) as refused:
        await read(small, long_text(2000))
    assert str(refused.value) == "body text over the limit of 1000 characters"
    with pytest.raises(UnparseableEmail) as refused:
        await read(small, many_parts(3, size=1100))
    assert str(refused.value) == (
        "attachments of 3300 bytes, over the limit of 3000 bytes per message"
    )
    assert not (tmp_path / "att").exists()  # refused whole: not one of its files written
    contact = await read(small, many_parts(2, size=1100))
    assert [a.size for a in contact.attachments] == [1100, 1100]


async def test_the_store_quota_refuses_a_message_whole_and_content_already_stored_is_free(
    tmp_path: Path,
) -> None:
    r = reader(tmp_path, attachments_quota_bytes=3000)
    first = await read(r, many_parts(2, size=500))
    assert r.attachments is not None and r.attachments.used_bytes() == 1000
    with pytest.raises(UnparseableEmail) as refused:
        await read(r, many_parts(3, size=900))
    assert str(refused.value) == (
        "the attachment store is full: 1000 + 2700 bytes would pass its quota of 3000 bytes "
        "(email.limits.attachments_quota_bytes)"
    )
    assert r.attachments.used_bytes() == 1000
    again = await read(r, many_parts(2, size=500))  # the same files: nothing new to store
    assert [a.sha256 for a in again.attachments] == [a.sha256 for a in first.attachments]
    files = sorted(p.name for p in (tmp_path / "att").rglob("*") if p.is_file())
    assert files == sorted(a.sha256 or "" for a in first.attachments)


async def test_the_worker_limits_catch_what_the_byte_limits_let_through(tmp_path: Path) -> None:
    """With the structural limits lifted, the worker's memory and time limits still
    cost one message each, and the next message is read by a fresh worker."""
    lifted = MailLimits(
        max_quote_depth=10**6,
        max_text_chars=10**12,
        max_mime_parts=10**6,
        parser_memory_bytes=256_000_000,
        parser_timeout_seconds=1.0,
    )
    pool = ParserPool(1, lifted.parser_timeout_seconds, lifted.parser_memory_bytes)
    try:
        # 10,000 nested quotes make ~400 M characters of text: far past 256 MB.
        with pytest.raises(UnparseableEmail) as refused:
            await pool.parse(ParseJob(nested_quotes(10_000), 10**6, None, lifted))
        assert str(refused.value) == (
            "parsing needed more than the parser's memory limit of 256 MB; the worker was restarted"
        )
        # 30,000 attachments take the parser many seconds.
        with pytest.raises(UnparseableEmail) as refused:
            await pool.parse(ParseJob(many_parts(30_000), 10**6, None, lifted))
        assert str(refused.value) == "parsing took longer than 1 s; the worker was killed"
        assert pool.replaced == 2
        parsed = await pool.parse(ParseJob(message(7), 10**6, None, lifted))
        assert parsed.contact.provider_id == "<m7@example.org>"
    finally:
        pool.close()


async def test_the_event_loop_runs_while_a_message_is_parsed(tmp_path: Path) -> None:
    """Parsing happens in the worker: the loop keeps answering meanwhile (before, a
    slow message held every webhook and API request until it was done)."""
    lifted = MailLimits(max_mime_parts=10**6, parser_timeout_seconds=1.0)
    pool = ParserPool(1, 1.0, lifted.parser_memory_bytes)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        with pytest.raises(UnparseableEmail):
            await pool.parse(ParseJob(many_parts(30_000), 10**6, None, lifted))
        assert ticks > 0
    finally:
        task.cancel()
        pool.close()


@pytest.fixture
async def mail_hub(db_url: str, db: Database, tmp_path: Path) -> AsyncIterator[Hub]:
    settings = make_settings(
        db_url,
        email={
            "attachments_dir": str(tmp_path / "attachments"),
            "reply_token_secret": SECRET,
            "mailboxes": [{"name": "support", "address": "support@example.com"}],
        },
    )
    hub = Hub(settings)
    await hub.start()
    yield hub
    await hub.stop()


def _store(hub: Hub) -> MailStore:
    mailbox = hub.settings.email.mailboxes[0]
    return MailStore(hub.db, hub.ingestor, mailbox, hub.settings.email, hub.attachments)


async def _state(hub: Hub) -> tuple[list[str], list[tuple[int, str]], list[tuple[int, int]]]:
    async with hub.db.read() as s:
        conn = await s.connection()
        stored = await conn.execute(
            select(interaction_t.c.provider_id).order_by(interaction_t.c.id)
        )
        held = await conn.execute(
            select(quarantine_t.c.uid, quarantine_t.c.error).order_by(quarantine_t.c.uid)
        )
        point = await conn.execute(select(checkpoint_t.c.uidvalidity, checkpoint_t.c.last_uid))
        return (
            [r[0] for r in stored],
            [(r[0], r[1]) for r in held],
            [(r[0], r[1]) for r in point],
        )


@pytest.mark.db
async def test_a_bomb_is_quarantined_the_checkpoint_passes_it_and_a_restart_reads_nothing_again(
    mail_hub: Hub, db_url: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    chunk = [
        FetchedMessage(1, message(1), now),
        FetchedMessage(2, nested_quotes(2000), now),
        FetchedMessage(3, encoded_words(5000), now),
        FetchedMessage(4, message(4), now),
    ]
    await _store(mail_hub).store("INBOX", 7, chunk, False)
    expected = (
        ["<m1@example.org>", "<m4@example.org>"],
        [
            (2, "quotes nested over the limit of 50 levels"),
            (3, "5000 encoded words in headers, over the limit of 1000"),
        ],
        [(7, 4)],
    )
    assert await _state(mail_hub) == expected
    # A restart: the checkpoint says where to go on, so the bombs are not read
    # again; a resync that fetches them anyway holds each once, still.
    await mail_hub.stop()
    again = Hub(mail_hub.settings)
    await again.start()
    try:
        store = _store(again)
        assert await store.checkpoint("INBOX") == (7, 4)
        await store.store("INBOX", 7, chunk, True)
        await store.store("INBOX", 7, [FetchedMessage(5, message(5), now)], False)
        stored, held, point = await _state(again)
        assert stored == ["<m1@example.org>", "<m4@example.org>", "<m5@example.org>"]
        assert (held, point) == (expected[1], [(7, 5)])
    finally:
        await again.stop()
        await mail_hub.start()  # the fixture stops it


@pytest.mark.db
async def test_a_message_over_the_size_limit_is_held_with_its_header_and_never_released(
    mail_hub: Hub,
) -> None:
    header_only = message(2).split(b"\n\n")[0] + b"\n\n"
    await _store(mail_hub).store(
        "INBOX", 7, [FetchedMessage(2, header_only, None, size=80_000_000)], False
    )
    reason = (
        "header only: message of 80000000 bytes is over the limit of 50000000 bytes; "
        "the whole message stays in the mailbox"
    )
    assert await _state(mail_hub) == ([], [(2, reason)], [(7, 2)])
    report = await mail_hub.quarantine.retry(None)
    assert report.released == []
    assert list(report.failed.values()) == [f"still held: {reason}"]
    assert await _state(mail_hub) == ([], [(2, reason)], [(7, 2)])


@pytest.mark.db
async def test_a_huge_message_in_a_real_mailbox_is_fetched_as_its_header_only(
    db_url: str,
    db: Database,
    dovecot: ImapServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Dovecot reports each message's size; one over the limit is never fetched
    whole, is held with its header, and the message after it is stored."""
    monkeypatch.setenv(PASSWORD_ENV, dovecot.password)
    user = new_user()
    huge = message(2) + b"x" * 20_000
    append(dovecot, user, "INBOX", message(1), huge, message(3))
    settings = mail_settings(db_url, dovecot, user, tmp_path)
    email = settings.email.model_copy(update={"limits": MailLimits(max_message_bytes=10_000)})
    hub = Hub(settings.model_copy(update={"email": email}))
    await hub.start()
    try:
        mailbox = email.mailboxes[0]
        assert mailbox.imap is not None
        store = MailStore(hub.db, hub.ingestor, mailbox, email, hub.attachments)
        sync = MailboxSync(
            mailbox.name,
            mailbox.imap,
            mailbox.imap.password(),
            store.checkpoint,
            store.store,
            max_message_bytes=email.limits.max_message_bytes,
        )
        try:
            await sync.sync_once()
        finally:
            await sync.stop()
        stored, held, point = await _state(hub)
        assert stored == ["<m1@example.org>", "<m3@example.org>"]
        stored_as = huge.replace(b"\n", b"\r\n")  # Dovecot keeps CRLF line ends
        assert held == [
            (
                2,
                f"header only: message of {len(stored_as)} bytes is over the limit of 10000 bytes; "
                "the whole message stays in the mailbox",
            )
        ]
        assert point[0][1] == 3
        async with hub.db.read() as s:
            conn = await s.connection()
            raw = (await conn.execute(select(quarantine_t.c.raw))).scalar_one()
        assert b"Message-ID: <m2@example.org>" in raw and b"xxxx" not in raw
    finally:
        await hub.stop()
