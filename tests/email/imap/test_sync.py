"""Exactly-once IMAP ingest against the real Dovecot: checkpoints, flags, outages, resyncs.

`MailboxSync` with a MemoryStore standing in for the hub (tests/imap_helpers.py);
`ImapClient` alone is in test_imap_client.py.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from channels.email.imap import FetchedMessage, ImapClient
from channels.email.imap_sync import MailboxSync
from tests.support.dovecot import ImapServer, append, folder_flags, session
from tests.support.imap import (
    SYNC_LOG,
    MemoryStore,
    all_seen,
    config,
    error_records,
    ids,
    mail,
    make_sync,
    new_user,
    records,
    running,
    sync_round,
    uidvalidity,
    until,
)


async def test_first_sync_stores_all_in_batches_and_flags_seen(dovecot: ImapServer) -> None:
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


async def test_incremental_sync_and_the_uid_star_trap(dovecot: ImapServer) -> None:
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
    dovecot: ImapServer,
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


async def test_idle_picks_up_new_mail(dovecot: ImapServer) -> None:
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
    dovecot: ImapServer,
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
    dovecot: ImapServer,
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
    dovecot: ImapServer,
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


async def test_several_folders_each_with_its_checkpoint(dovecot: ImapServer) -> None:
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


async def test_connection_lost_while_idling_reconnects(
    dovecot: ImapServer,
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


async def test_missing_folder_is_skipped_and_idle_moves_to_the_next(
    dovecot: ImapServer,
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
    dovecot: ImapServer,
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


async def test_a_crashed_round_is_logged_once_and_retried(
    dovecot: ImapServer,
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
    dovecot: ImapServer,
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
