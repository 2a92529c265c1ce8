"""Exactly-once IMAP ingest for one mailbox: checkpoint, fetch, commit, then flag or move.

The durable state is the store's checkpoint per folder, (UIDVALIDITY, last
UID), committed in the same transaction as the messages it covers. The
server-side flag or move happens only after that commit, so:

- a crash before the commit refetches the batch (nothing lost);
- a crash after it leaves the batch unflagged but covered by the checkpoint
  (nothing twice); the flag is cosmetic, the checkpoint is the truth;
- a changed UIDVALIDITY refetches the whole folder with `resync=True`; the
  store dedupes by Message-ID, so that costs bandwidth, not duplicates.

Outages (IMAP or database) are logged once each: a WARNING when one starts,
an INFO when it ends saying how long it lasted; the retries between are DEBUG.
A folder that cannot be selected (deleted, a typo in the config) is skipped,
the others are read on the same connection: a WARNING when it goes missing,
an INFO when it is back. A round that dies of anything else (a bug here or
in the store, an answer nobody expected) is logged at ERROR with its
traceback, once per run of such failures, and retried like an IMAP outage
on a new connection; only cancellation ends `run()` early.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from channels.email.config import ImapConfig
from channels.email.imap import FetchedMessage, ImapClient, ImapFolderError, ImapUnavailable

log = logging.getLogger(__name__)

Checkpoints = Callable[[str], Awaitable[tuple[int, int] | None]]
Store = Callable[[str, int, list[FetchedMessage], bool], Awaitable[None]]
ClientFactory = Callable[[str, ImapConfig, str], ImapClient]

# How long stop() lets run() wind down on its own before cancelling it.
STOP_GRACE_SECONDS = 1.5


class StoreUnavailable(Exception):
    """Raised by the store when the database is away: keep the mail on the server, retry later."""


class _Outage:
    """Backoff and once-per-outage logging for one kind of failure."""

    def __init__(
        self, what: str, name: str, low: float, high: float, *, crash: bool = False
    ) -> None:
        self.what, self.name, self.low, self.high = what, name, low, max(low, high)
        # A crash is a bug, not weather: ERROR with the traceback, not WARNING.
        self.crash = crash
        self.since: float | None = None
        self.tries = 0
        self.count = 0

    def failed(self, exc: BaseException) -> float:
        """Record a failed try; returns the seconds to wait before the next."""
        self.tries += 1
        if self.since is None:
            self.since = time.monotonic()
            self.count += 1
            if self.crash:
                log.error(
                    "mailbox %s: %s round crashed, retrying on a new connection: %r",
                    self.name,
                    self.what,
                    exc,
                    exc_info=exc,
                )
            else:
                log.warning("mailbox %s: %s unavailable, retrying: %s", self.name, self.what, exc)
        else:
            log.debug(
                "mailbox %s: %s still unavailable (try %d): %s",
                self.name,
                self.what,
                self.tries,
                exc,
            )
        return float(min(self.low * 2.0 ** min(self.tries - 1, 40), self.high))

    def recovered(self) -> None:
        if self.since is None:
            return
        log.info(
            "mailbox %s: %s back after %.1f s and %d failed tries",
            self.name,
            self.what,
            time.monotonic() - self.since,
            self.tries,
        )
        self.since, self.tries = None, 0


class MailboxSync:
    """Keeps one mailbox's folders ingested; `run()` until `stop()` (a stopped sync stays stopped).

    The store contract: `store(folder, uidvalidity, messages, resync)` commits
    the messages and the checkpoint (uidvalidity, max UID of `messages`) in one
    transaction, or raises `StoreUnavailable` having committed nothing. It
    must dedupe by Message-ID always: `resync` is True only for the batches
    of the round that noticed a UIDVALIDITY change (a first sync without a
    checkpoint is not a resync), so after a crash mid-resync the remaining
    batches arrive with resync=False. An empty `messages` (only with resync)
    reports an empty folder under a new UIDVALIDITY: checkpoint (uidvalidity, 0).
    """

    def __init__(
        self,
        name: str,
        config: ImapConfig,
        password: str,
        checkpoints: Checkpoints,
        store: Store,
        *,
        client_factory: ClientFactory = ImapClient,
        max_message_bytes: int | None = None,
    ) -> None:
        self.name = name
        # Larger messages are fetched as their header only (the store quarantines them).
        self.max_message_bytes = max_message_bytes
        self.config = config
        self._password = password
        self._checkpoints = checkpoints
        self._store = store
        self._client_factory = client_factory
        self.client: ImapClient | None = None
        # Counters for tests, the bench and status pages.
        self.stored = 0
        self.connects = 0
        self.rounds = 0
        self.idle_wakeups = 0
        self._imap_outage = _Outage(
            "IMAP", name, config.reconnect_min_seconds, config.reconnect_max_seconds
        )
        self._store_outage = _Outage(
            "store", name, config.reconnect_min_seconds, config.reconnect_max_seconds
        )
        self._crash_outage = _Outage(
            "sync", name, config.reconnect_min_seconds, config.reconnect_max_seconds, crash=True
        )
        # True when the last crash came while waiting for mail (after a good round).
        self._crashed_waiting = False
        # Folders that could not be selected: name -> since (monotonic).
        self._missing: dict[str, float] = {}
        self._stopping = asyncio.Event()
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._warned: set[tuple[str, int]] = set()

    @property
    def outages(self) -> int:
        return self._imap_outage.count

    @property
    def store_outages(self) -> int:
        return self._store_outage.count

    @property
    def crashes(self) -> int:
        """Runs of rounds that failed with an unexpected exception (a bug; see the log)."""
        return self._crash_outage.count

    @property
    def missing_folders(self) -> list[str]:
        """Configured folders that could not be selected on the last try."""
        return [f for f in self.config.folders if f in self._missing]

    @property
    def failed_tries(self) -> int:
        """Failed tries in the current IMAP outage (0 when connected)."""
        return self._imap_outage.tries

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once `predicate()` holds; re-checked whenever a counter changes."""
        async with self._changed:
            await self._changed.wait_for(predicate)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- one round ----------------------------------------------------------------

    async def sync_once(self) -> int:
        """Ingest what is new in every folder; returns the number of messages stored."""
        if self.client is None:
            await self._connect()
        total = 0
        for folder in self.config.folders:
            total += await self._sync_folder(folder)
        self.rounds += 1
        await self._notify()
        return total

    async def _sync_folder(self, folder: str) -> int:
        client = self._require_client()
        try:
            state = await client.select(folder)
        except ImapFolderError as exc:
            self._folder_missing(folder, exc)
            return 0
        self._folder_found(folder)
        checkpoint = await self._checkpoints(folder)
        resync = checkpoint is not None and checkpoint[0] != state.uidvalidity
        if checkpoint is not None and resync and (folder, state.uidvalidity) not in self._warned:
            # Once per change: a store that keeps no checkpoint for an empty
            # batch would otherwise have it reported on every round.
            self._warned.add((folder, state.uidvalidity))
            log.warning(
                "mailbox %s: folder %s changed UIDVALIDITY %d -> %d; refetching it all",
                self.name,
                folder,
                checkpoint[0],
                state.uidvalidity,
            )
        last_uid = 0 if resync or checkpoint is None else checkpoint[1]
        uids = await client.uids_after(last_uid)
        if not uids and resync:
            # An empty folder under a new UIDVALIDITY: lets the store record it.
            await self._store(folder, state.uidvalidity, [], True)
        stored = 0
        size = self.config.batch_size
        for start in range(0, len(uids), size):
            messages = await client.fetch(uids[start : start + size], self.max_message_bytes)
            if not messages:  # the whole batch was expunged meanwhile
                continue
            await self._store(folder, state.uidvalidity, messages, resync)
            stored += len(messages)
            self.stored += len(messages)
            await self._notify()
            # After the commit only: if this fails the checkpoint already covers them.
            await client.done([m.uid for m in messages])
        return stored

    def _folder_missing(self, folder: str, exc: ImapFolderError) -> None:
        if folder in self._missing:
            log.debug("mailbox %s: folder %s still unavailable: %s", self.name, folder, exc)
            return
        self._missing[folder] = time.monotonic()
        log.warning(
            "mailbox %s: folder %s unavailable, skipping it until it is back: %s",
            self.name,
            folder,
            exc,
        )

    def _folder_found(self, folder: str) -> None:
        since = self._missing.pop(folder, None)
        if since is not None:
            log.info(
                "mailbox %s: folder %s back after %.1f s",
                self.name,
                folder,
                time.monotonic() - since,
            )

    def _require_client(self) -> ImapClient:
        if self.client is None:
            raise ImapUnavailable(f"{self.name}: not connected")
        return self.client

    async def _connect(self) -> None:
        client = self._client_factory(self.name, self.config, self._password)
        try:
            await client.connect()
        except asyncio.CancelledError:
            client.abandon()
            raise
        except BaseException:
            await client.close()
            raise
        self.client = client
        self.connects += 1

    async def _drop_client(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            await client.close()

    # -- the loop -----------------------------------------------------------------

    async def run(self) -> None:
        """Sync, wait for mail (IDLE or poll), repeat; survives IMAP and store outages
        and crashed rounds. Returns after `stop()`; raises only CancelledError."""
        self._task = asyncio.current_task()
        try:
            while not self._stopping.is_set():
                waiting = False
                try:
                    await self.sync_once()
                    self._imap_outage.recovered()
                    self._store_outage.recovered()
                    if not self._crashed_waiting:
                        self._crash_outage.recovered()
                    waiting = True
                    await self._wait_for_mail()
                    # A crash while waiting ends only once a wait succeeds, so
                    # a bug there is not logged again after every good round.
                    self._crashed_waiting = False
                    self._crash_outage.recovered()
                except StoreUnavailable as exc:
                    # Keep the connection: the mail stays unflagged on the server.
                    delay = self._store_outage.failed(exc)
                    await self._notify()
                    await self._sleep(delay)
                except ImapUnavailable as exc:
                    delay = self._imap_outage.failed(exc)
                    await self._drop_client()
                    await self._notify()
                    await self._sleep(delay)
                except Exception as exc:  # not CancelledError: a BaseException
                    # Whatever state the connection is in is unknown: start over.
                    self._crashed_waiting = waiting
                    delay = self._crash_outage.failed(exc)
                    await self._drop_client()
                    await self._notify()
                    await self._sleep(delay)
        finally:
            await self._drop_client()

    async def _wait_for_mail(self) -> None:
        client = self._require_client()
        cfg = self.config
        # IDLE on the first folder, or while it is missing the first one there is.
        folder = next((f for f in cfg.folders if f not in self._missing), None)
        if cfg.mode != "idle" or not client.has_idle or folder is None:
            await self._sleep(cfg.poll_seconds)
            return
        # IDLE sees only the selected folder; the others are polled meanwhile.
        seconds = cfg.idle_renew_seconds
        if len(cfg.folders) > 1:
            seconds = min(seconds, cfg.poll_seconds)
        if client.selected != folder:
            try:
                await client.select(folder)
            except ImapFolderError as exc:  # gone since the round: poll instead
                self._folder_missing(folder, exc)
                await self._sleep(cfg.poll_seconds)
                return
        # Each call ends with DONE; the next round's IDLE is the renewal.
        if await client.idle(seconds):
            self.idle_wakeups += 1

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def stop(self) -> None:
        """End `run()` promptly and close the connection."""
        self._stopping.set()
        if self.client is not None:
            self.client.interrupt()
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task() and not task.done():
            done, _ = await asyncio.wait({task}, timeout=STOP_GRACE_SECONDS)
            if not done:  # stuck in a blocking call (e.g. connect); abandon it
                task.cancel()
                await asyncio.wait({task})
        await self._drop_client()


__all__ = ["Checkpoints", "MailboxSync", "Store", "StoreUnavailable"]
