"""Exactly-once IMAP ingest against the real Dovecot: checkpoints, flags, outages, resyncs.

The store here stands in for the hub: it keeps messages by Message-ID (the
hub's idempotency key) together with the checkpoint, and can be told that
the database is away.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from typing import Any

import pytest
from pydantic import ValidationError

from channels.email.config import ImapConfig
from channels.email.imap import (
    FetchedMessage,
    FolderState,
    ImapAuthError,
    ImapClient,
    ImapFolderError,
)
from channels.email.imap_sync import MailboxSync, StoreUnavailable
from tests.dovecot import ImapServer, append, dovecot, folder_flags, session  # noqa: F401

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


async def test_first_sync_stores_all_in_batches_and_flags_seen(dovecot: ImapServer) -> None:  # noqa: F811
    user, store = new_user(), MemoryStore()
    append(dovecot, user, "INBOX", *(mail("a", i) for i in range(1, 6)))
    assert not any(b"\\Seen" in f for f in folder_flags(dovecot, user, "INBOX").values())

    assert await sync_round(dovecot, store, config(dovecot, user, batch_size=2)) == 5

    v = uidvalidity(dovecot, user, "INBOX")
    assert store.ids == ids("a", range(1, 6))
    assert [c[2] for c in store.calls] == [[1, 2], [3, 4], [5]]
    assert {c[3] for c in store.calls} == {False}
    assert store.checkpoint == {"INBOX": (v, 5)}
    flags = folder_flags(dovecot, user, "INBOX")
    assert sorted(flags) == [1, 2, 3, 4, 5]
    assert all_seen(flags)


async def test_incremental_sync_and_the_uid_star_trap(dovecot: ImapServer) -> None:  # noqa: F811
    user, store = new_user(), MemoryStore()
    cfg = config(dovecot, user)
    append(dovecot, user, "INBOX", *(mail("b", i) for i in range(1, 4)))
    assert await sync_round(dovecot, store, cfg) == 3

    # `UID 4:*` answers UID 3 when nothing is newer: it must not be stored again.
    assert await sync_round(dovecot, store, cfg) == 0
    assert len(store.calls) == 1

    append(dovecot, user, "INBOX", mail("b", 4), mail("b", 5))
    assert await sync_round(dovecot, store, cfg) == 2
    assert [c[2] for c in store.calls] == [[1, 2, 3], [4, 5]]
    assert store.ids == ids("b", range(1, 6))
    assert store.checkpoint["INBOX"] == (uidvalidity(dovecot, user, "INBOX"), 5)
    assert store.duplicates == 0


class CopyDeleteClient(ImapClient):
    """A client that ignores the server's MOVE, to take the COPY + EXPUNGE path."""

    async def connect(self) -> None:
        await super().connect()
        self._capabilities = self._capabilities - {"MOVE"}


@pytest.mark.parametrize("factory", [ImapClient, CopyDeleteClient], ids=["move", "copy"])
async def test_move_mode_empties_the_inbox(
    dovecot: ImapServer,  # noqa: F811
    factory: type[ImapClient],
) -> None:
    user, store = new_user(), MemoryStore()
    cfg = config(dovecot, user, after_ingest="move", move_to="Processed")
    append(dovecot, user, "INBOX", *(mail("c", i) for i in range(1, 4)))
    sync = make_sync(dovecot, store, cfg, client_factory=factory)
    try:
        assert await sync.sync_once() == 3
        append(dovecot, user, "INBOX", mail("c", 4))
        assert await sync.sync_once() == 1
    finally:
        await sync.stop()

    assert store.ids == ids("c", range(1, 5))
    assert folder_flags(dovecot, user, "INBOX") == {}
    moved = folder_flags(dovecot, user, "Processed")
    assert sorted(moved) == [1, 2, 3, 4]
    assert not any(b"\\Deleted" in f for f in moved.values())
    # The checkpoint still covers the moved UIDs: nothing is fetched again.
    assert store.checkpoint["INBOX"] == (uidvalidity(dovecot, user, "INBOX"), 4)


async def test_idle_picks_up_new_mail(dovecot: ImapServer) -> None:  # noqa: F811
    user, store = new_user(), MemoryStore()
    # Polling and renewal far beyond the wait: only IDLE can deliver in time.
    cfg = config(dovecot, user, mode="idle", poll_seconds=600, idle_renew_seconds=600)
    sync = make_sync(dovecot, store, cfg)
    async with running(sync):
        await until(sync, lambda: sync.rounds >= 1)
        assert sync.client is not None and sync.client.has_idle
        append(dovecot, user, "INBOX", mail("d", 1))
        await until(sync, lambda: sync.stored == 1)
        assert sync.idle_wakeups == 1
    assert sync.client is None
    assert store.ids == ids("d", range(1, 2))
    assert all_seen(folder_flags(dovecot, user, "INBOX"))


async def test_dovecot_outage_mid_sync_loses_and_repeats_nothing(
    dovecot: ImapServer,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=SYNC_LOG)
    user, store = new_user(), MemoryStore()
    append(dovecot, user, "INBOX", *(mail("e", i) for i in range(1, 7)))
    sync = make_sync(dovecot, store, config(dovecot, user, batch_size=2))
    stopped = False

    async def stop_server_after_second_batch(calls: int) -> None:
        nonlocal stopped
        if calls == 2:
            # The batch is committed; the server dies before it is flagged.
            await asyncio.to_thread(dovecot.stop_and_disconnect)
            stopped = True

    store.on_store = stop_server_after_second_batch
    try:
        async with running(sync):
            await until(sync, lambda: sync.outages == 1 and sync.failed_tries >= 3)
            await asyncio.to_thread(dovecot.start)
            stopped = False
            await until(sync, lambda: sync.stored == 6)
            append(dovecot, user, "INBOX", mail("e", 7), mail("e", 8))
            await until(sync, lambda: sync.stored == 8)
    finally:
        if stopped:
            dovecot.start()

    assert store.ids == ids("e", range(1, 9))
    assert store.duplicates == 0
    assert [c[2] for c in store.calls] == [[1, 2], [3, 4], [5, 6], [7, 8]]
    assert sync.outages == 1
    assert sync.connects == 2
    warnings = records(caplog, logging.WARNING)
    assert len(warnings) == 1 and "IMAP unavailable" in warnings[0]
    assert len([m for m in records(caplog, logging.INFO) if "IMAP back after" in m]) == 1
    flags = folder_flags(dovecot, user, "INBOX")
    # 3 and 4 were committed but never flagged: the checkpoint, not the flag, is the truth.
    assert sorted(uid for uid, f in flags.items() if b"\\Seen" not in f) == [3, 4]


async def test_uidvalidity_change_resyncs_without_duplicates(
    dovecot: ImapServer,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=SYNC_LOG)
    user, store = new_user(), MemoryStore()
    cfg = config(dovecot, user, folders=["Support"])
    append(dovecot, user, "Support", *(mail("f", i) for i in range(1, 4)))
    assert await sync_round(dovecot, store, cfg) == 3
    old = store.checkpoint["Support"]

    with session(dovecot, user) as imap:
        imap.delete_folder("Support")
    append(dovecot, user, "Support", *(mail("f", i) for i in range(1, 5)))
    new = uidvalidity(dovecot, user, "Support")
    assert new != old[0]

    assert await sync_round(dovecot, store, cfg) == 4
    assert store.calls[-1] == ("Support", new, [1, 2, 3, 4], True)
    assert store.ids == ids("f", range(1, 5))
    assert store.checkpoint["Support"] == (new, 4)
    assert await sync_round(dovecot, store, cfg) == 0

    # Recreated empty: the new UIDVALIDITY is still recorded, and reported once.
    with session(dovecot, user) as imap:
        imap.delete_folder("Support")
        imap.create_folder("Support")
    newest = uidvalidity(dovecot, user, "Support")
    assert await sync_round(dovecot, store, cfg) == 0
    assert store.calls[-1] == ("Support", newest, [], True)
    assert store.checkpoint["Support"] == (newest, 0)
    assert await sync_round(dovecot, store, cfg) == 0
    assert len(store.calls) == 3
    assert store.ids == ids("f", range(1, 5))
    assert records(caplog, logging.WARNING) == [
        f"mailbox support: folder Support changed UIDVALIDITY {a} -> {b}; refetching it all"
        for a, b in ((old[0], new), (new, newest))
    ]


async def test_store_outage_flags_nothing_and_retries(
    dovecot: ImapServer,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=SYNC_LOG)
    user, store = new_user(), MemoryStore()
    store.fail = True
    append(dovecot, user, "INBOX", *(mail("g", i) for i in range(1, 4)))
    sync = make_sync(dovecot, store, config(dovecot, user))
    async with running(sync):
        await until(sync, lambda: store.failures >= 3)
        flags = folder_flags(dovecot, user, "INBOX")
        assert sorted(flags) == [1, 2, 3]
        assert not any(b"\\Seen" in f for f in flags.values())
        store.fail = False
        await until(sync, lambda: sync.stored == 3)
    assert store.ids == ids("g", range(1, 4))
    assert [c[2] for c in store.calls] == [[1, 2, 3]]
    assert (sync.store_outages, sync.outages, sync.connects) == (1, 0, 1)
    warnings = records(caplog, logging.WARNING)
    assert len(warnings) == 1 and "store unavailable" in warnings[0]
    assert all_seen(folder_flags(dovecot, user, "INBOX"))


async def test_several_folders_each_with_its_checkpoint(dovecot: ImapServer) -> None:  # noqa: F811
    user, store = new_user(), MemoryStore()
    append(dovecot, user, "INBOX", mail("h", 1), mail("h", 2))
    append(dovecot, user, "Orders", mail("h", 3), mail("h", 4), mail("h", 5))
    # IDLE watches INBOX only; Orders must still be looked at every poll_seconds.
    cfg = config(dovecot, user, folders=["INBOX", "Orders"], mode="idle", idle_renew_seconds=600)
    sync = make_sync(dovecot, store, cfg)
    async with running(sync):
        await until(sync, lambda: sync.stored == 5)
        append(dovecot, user, "Orders", mail("h", 6))
        await until(sync, lambda: sync.stored == 6)
    assert store.ids == ids("h", range(1, 7))
    assert store.checkpoint == {
        "INBOX": (uidvalidity(dovecot, user, "INBOX"), 2),
        "Orders": (uidvalidity(dovecot, user, "Orders"), 4),
    }
    assert all_seen(folder_flags(dovecot, user, "INBOX"))
    assert all_seen(folder_flags(dovecot, user, "Orders"))


async def test_refuses_clear_login_without_starttls_and_bad_passwords(
    dovecot: ImapServer,  # noqa: F811
) -> None:
    user = new_user()
    for cfg, password in (
        (config(dovecot, user, tls="starttls"), dovecot.password),
        (config(dovecot, user), "wrong"),
    ):
        client = ImapClient("support", cfg, password)
        try:
            with pytest.raises(ImapAuthError):
                await client.connect()
        finally:
            await client.close()


async def test_connection_lost_while_idling_reconnects(
    dovecot: ImapServer,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=SYNC_LOG)
    user, store = new_user(), MemoryStore()
    cfg = config(dovecot, user, mode="idle", poll_seconds=600, idle_renew_seconds=600)
    sync = make_sync(dovecot, store, cfg)
    stopped = False
    try:
        async with running(sync):
            await until(sync, lambda: sync.rounds >= 1)
            stopped = True
            await asyncio.to_thread(dovecot.stop_and_disconnect)
            await until(sync, lambda: sync.outages == 1 and sync.failed_tries >= 2)
            await asyncio.to_thread(dovecot.start)
            stopped = False
            await until(sync, lambda: sync.connects == 2)
            append(dovecot, user, "INBOX", mail("i", 1))
            await until(sync, lambda: sync.stored == 1)
    finally:
        if stopped:
            dovecot.start()
    assert store.ids == ids("i", range(1, 2))
    assert len(records(caplog, logging.WARNING)) == 1


async def test_client_fetch_skips_vanished_uids_and_keeps_order(
    dovecot: ImapServer,  # noqa: F811
) -> None:
    user = new_user()
    append(dovecot, user, "INBOX", mail("j", 1), mail("j", 2))
    client = ImapClient("support", config(dovecot, user), dovecot.password)
    try:
        await client.connect()
        state = await client.select("INBOX")
        assert state == FolderState(uidvalidity(dovecot, user, "INBOX"), 3)
        assert await client.uids_after(0) == [1, 2]
        assert await client.uids_after(2) == []
        fetched = await client.fetch([2, 99, 1])
    finally:
        await client.close()
    assert [m.uid for m in fetched] == [2, 1]
    assert [m.raw.replace(b"\r\n", b"\n") for m in fetched] == [
        mail("j", 2).replace(b"\r\n", b"\n"),
        mail("j", 1).replace(b"\r\n", b"\n"),
    ]
    assert all(m.internaldate is not None and m.internaldate.tzinfo for m in fetched)
    # BODY.PEEK[]: fetching alone marks nothing read.
    assert not any(b"\\Seen" in f for f in folder_flags(dovecot, user, "INBOX").values())


async def test_client_socket_has_tcp_keepalive(dovecot: ImapServer) -> None:  # noqa: F811
    client = ImapClient("support", config(dovecot, new_user()), dovecot.password)
    try:
        await client.connect()
        sock = client._conn().socket()
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0
        for option, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 15), ("TCP_KEEPCNT", 4)):
            if hasattr(socket, option):
                assert sock.getsockopt(socket.IPPROTO_TCP, getattr(socket, option)) == value
    finally:
        await client.close()


def test_idle_renewal_is_below_29_minutes() -> None:
    assert ImapConfig(idle_renew_seconds=29 * 60 - 1).idle_renew_seconds == 29 * 60 - 1
    with pytest.raises(ValidationError):
        ImapConfig(idle_renew_seconds=29 * 60)


async def test_client_select_of_a_missing_folder_keeps_the_connection(
    dovecot: ImapServer,  # noqa: F811
) -> None:
    user = new_user()
    append(dovecot, user, "INBOX", mail("k", 1))
    client = ImapClient("support", config(dovecot, user), dovecot.password)
    try:
        await client.connect()
        await client.select("INBOX")
        with pytest.raises(ImapFolderError) as caught:
            await client.select("Missing")
        assert caught.value.folder == "Missing"
        assert client.selected is None
        await client.select("INBOX")
        assert client.selected == "INBOX"
        assert await client.uids_after(0) == [1]
    finally:
        await client.close()


class NoUidvalidityClient(ImapClient):
    """A server whose SELECT answer lacks UIDVALIDITY (Dovecot always sends it)."""

    async def connect(self) -> None:
        await super().connect()
        imap = self._conn()
        select_folder = imap.select_folder

        def without_uidvalidity(folder: str, readonly: bool = False) -> dict[bytes, Any]:
            info = dict(select_folder(folder, readonly))
            del info[b"UIDVALIDITY"]
            return info

        imap.select_folder = without_uidvalidity  # type: ignore[method-assign]


async def test_client_select_answer_without_uidvalidity_is_a_folder_error(
    dovecot: ImapServer,  # noqa: F811
) -> None:
    client = NoUidvalidityClient("support", config(dovecot, new_user()), dovecot.password)
    try:
        await client.connect()
        with pytest.raises(ImapFolderError, match="without a valid UIDVALIDITY"):
            await client.select("INBOX")
        assert client.selected is None
    finally:
        await client.close()


async def test_missing_folder_is_skipped_and_idle_moves_to_the_next(
    dovecot: ImapServer,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=SYNC_LOG)
    user, store = new_user(), MemoryStore()
    append(dovecot, user, "INBOX", mail("l", 1), mail("l", 2))
    # Polling and renewal far beyond the wait: only IDLE on INBOX can deliver in time.
    cfg = config(
        dovecot,
        user,
        folders=["Missing", "INBOX"],
        mode="idle",
        poll_seconds=600,
        idle_renew_seconds=600,
    )
    sync = make_sync(dovecot, store, cfg)
    async with running(sync):
        await until(sync, lambda: sync.stored == 2)
        assert sync.missing_folders == ["Missing"]
        append(dovecot, user, "INBOX", mail("l", 3))
        await until(sync, lambda: sync.stored == 3)
        assert sync.idle_wakeups == 1
        # Created meanwhile; the INBOX message wakes the IDLE for the next round.
        append(dovecot, user, "Missing", mail("l", 4))
        append(dovecot, user, "INBOX", mail("l", 5))
        await until(sync, lambda: sync.stored == 5)
        assert sync.missing_folders == []
    assert store.ids == ids("l", range(1, 6))
    assert store.checkpoint == {
        "INBOX": (uidvalidity(dovecot, user, "INBOX"), 4),
        "Missing": (uidvalidity(dovecot, user, "Missing"), 1),
    }
    assert (sync.connects, sync.outages, sync.crashes, sync.idle_wakeups) == (1, 0, 0, 2)
    warnings = records(caplog, logging.WARNING)
    assert len(warnings) == 1
    assert warnings[0].startswith("mailbox support: folder Missing unavailable")
    back = [m for m in records(caplog, logging.INFO) if "back after" in m]
    assert len(back) == 1 and back[0].startswith("mailbox support: folder Missing back after")


async def test_only_folder_missing_polls_on_the_same_connection(
    dovecot: ImapServer,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=SYNC_LOG)
    user, store = new_user(), MemoryStore()
    cfg = config(dovecot, user, folders=["Gone"], mode="idle", idle_renew_seconds=600)
    sync = make_sync(dovecot, store, cfg)
    async with running(sync):
        await until(sync, lambda: sync.rounds >= 3)
        append(dovecot, user, "Gone", mail("m", 1))
        await until(sync, lambda: sync.stored == 1)
    assert store.ids == ids("m", range(1, 2))
    assert (sync.connects, sync.outages, sync.crashes) == (1, 0, 0)
    assert len(records(caplog, logging.WARNING)) == 1
    assert len(records(caplog, logging.INFO)) == 1


def error_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == SYNC_LOG and r.levelno >= logging.ERROR]


async def test_a_crashed_round_is_logged_once_and_retried(
    dovecot: ImapServer,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=SYNC_LOG)
    user, store = new_user(), MemoryStore()
    append(dovecot, user, "INBOX", *(mail("n", i) for i in range(1, 4)))
    calls = 0

    async def buggy_store(
        folder: str, uidvalidity: int, messages: list[FetchedMessage], resync: bool
    ) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug in the store")
        await store.store(folder, uidvalidity, messages, resync)

    cfg = config(dovecot, user, batch_size=2)
    sync = MailboxSync("support", cfg, dovecot.password, store.checkpoints, buggy_store)
    task = asyncio.create_task(sync.run())
    try:
        await until(sync, lambda: sync.stored == 3)
        append(dovecot, user, "INBOX", mail("n", 4))
        await until(sync, lambda: sync.stored == 4)
        rounds = sync.rounds  # the round storing 4 ends after flagging it
        await until(sync, lambda: sync.rounds > rounds)
    finally:
        task.cancel()
    # Cancellation is the one thing run() lets through.
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sync.client is None
    assert [c[2] for c in store.calls] == [[1, 2], [3], [4]]
    assert store.ids == ids("n", range(1, 5)) and store.duplicates == 0
    assert (sync.crashes, sync.connects, sync.outages) == (1, 2, 0)
    errors = error_records(caplog)
    assert len(errors) == 1
    assert errors[0].getMessage().startswith("mailbox support: sync round crashed")
    assert errors[0].exc_info is not None and isinstance(errors[0].exc_info[1], RuntimeError)
    assert len([m for m in records(caplog, logging.INFO) if "sync back after" in m]) == 1
    assert all_seen(folder_flags(dovecot, user, "INBOX"))


class BrokenIdleClient(ImapClient):
    """IDLE always fails with something that is not an IMAP error (a bug)."""

    async def idle(self, seconds: float) -> bool:
        raise KeyError("a bug while idling")


async def test_a_crash_while_waiting_is_logged_once_not_every_round(
    dovecot: ImapServer,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=SYNC_LOG)
    user, store = new_user(), MemoryStore()
    cfg = config(dovecot, user, mode="idle", idle_renew_seconds=600)
    sync = make_sync(dovecot, store, cfg, client_factory=BrokenIdleClient)
    async with running(sync):
        await until(sync, lambda: sync.connects >= 3)
        append(dovecot, user, "INBOX", mail("o", 1))
        await until(sync, lambda: sync.stored == 1)
    assert store.ids == ids("o", range(1, 2))
    assert sync.crashes == 1 and sync.outages == 0
    assert len(error_records(caplog)) == 1
    assert not [m for m in records(caplog, logging.INFO) if "back after" in m]


async def test_client_idle_sees_mail_announced_as_it_starts(
    dovecot: ImapServer,  # noqa: F811
) -> None:
    user = new_user()
    append(dovecot, user, "INBOX", mail("p", 1))
    client = ImapClient("support", config(dovecot, user), dovecot.password)
    try:
        await client.connect()
        await client.select("INBOX")
        assert await client.uids_after(0) == [1]
        # Arrives after the search: Dovecot announces it with (often in the
        # same packet as) its "+ idling", which imaplib buffers unseen by select().
        append(dovecot, user, "INBOX", mail("p", 2))
        assert await asyncio.wait_for(client.idle(600), WAIT) is True
        assert await client.uids_after(1) == [2]
    finally:
        await client.close()
