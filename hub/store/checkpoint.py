"""SQLite WAL checkpoints off the commit path, on a connection and thread of their own.

SQLite copies the write-ahead log back into the database file ("checkpoint")
inside the commit that crosses `wal_autocheckpoint` pages, so that commit,
and every webhook and screen pop waiting for it, took 35-90 ms instead of
~1 ms; at 1 M customers and 200 calls/s that happened every few seconds and
made the pop's p99 (bench/README.md, screen pop). While a node runs, its
write connections do not checkpoint (`wal_autocheckpoint=0`); this task runs
a PASSIVE checkpoint every `every` seconds on its own connection in a worker
thread instead. PASSIVE neither waits for nor blocks writers and readers: it
copies what no reader still needs, the next one copies the rest, and the
writer restarts the log from its beginning once all of it is copied.

Processes without a running hub (CLI commands, tests with a bare Database)
keep SQLite's own autocheckpoint. Durability does not depend on any of this:
every commit is in the fsynced WAL before it is acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3

from hub.store.db import LOCK_WAIT_SECONDS, Database

log = logging.getLogger(__name__)

EVERY_SECONDS = 1.0


class WalCheckpointer:
    def __init__(self, db: Database, every: float = EVERY_SECONDS) -> None:
        self.db = db
        self.every = every
        self.runs = 0  # checkpoints done (tests, introspection)
        self._conn: sqlite3.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._running: asyncio.Future[None] | None = None  # the checkpoint in its thread

    async def start(self) -> None:
        """Take checkpoints over from the write connections (SQLite files only)."""
        path = self.db.sqlite_path
        if path is None or self._task is not None:
            return
        self._conn = await asyncio.to_thread(_connect, path)
        await self.db.set_autocheckpoint(0)
        self._task = asyncio.create_task(self._run(), name="wal-checkpoint")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self._running is not None:  # a cancelled wait; the thread goes on: let it end
            with contextlib.suppress(Exception):
                await self._running
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.to_thread(_checkpoint, conn)  # what the last second wrote
            await asyncio.to_thread(conn.close)
        await self.db.set_autocheckpoint(None)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            conn = self._conn
            if conn is None:
                return
            running = self._running = asyncio.ensure_future(asyncio.to_thread(_checkpoint, conn))
            try:
                # Shielded: stop() cancels this wait, then waits for the thread itself.
                await asyncio.shield(running)
            except asyncio.CancelledError:
                raise
            except Exception:  # a full disk or I/O error: the next try may succeed
                log.warning("WAL checkpoint failed", exc_info=True)
            else:
                self.runs += 1
            self._running = None


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=LOCK_WAIT_SECONDS, check_same_thread=False)
    conn.isolation_level = None
    return conn


def _checkpoint(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
