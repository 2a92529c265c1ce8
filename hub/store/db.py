"""Engines and sessions for SQLite (embedded) and PostgreSQL.

SQLite allows one writer at a time. A deferred transaction that reads and
then writes can fail with SQLITE_BUSY at once instead of waiting, so writes go
through `write()`, whose transactions start with BEGIN IMMEDIATE and wait
(busy_timeout) for the lock; reads go through `read()` and never block in WAL
mode. On PostgreSQL both are the same engine. SQLite connections use the
faster aiosqlite adapter in `hub.store.sqlite_driver`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.config import DatabaseConfig
from hub.store.sqlite_driver import OneHopConnection, fast_aiosqlite_dbapi
from hub.store.tables import health_probe_t

log = logging.getLogger(__name__)


SQLITE_CACHE_KIB = 64 * 1024
SQLITE_MMAP_BYTES = 1024**3
# Read connections: a smaller private cache and no mmap (see _on_connect).
SQLITE_READ_CACHE_KIB = 16 * 1024
SQLITE_WAL_AUTOCHECKPOINT = 10_000


def _lower(value: str | None) -> str | None:
    return value.lower() if isinstance(value, str) else value


# How long a write waits for SQLite's write lock before it fails as an outage.
LOCK_WAIT_SECONDS = 10.0
# PostgreSQL: a pooled connection idle longer than this is pinged before use.
PING_IDLE_SECONDS = 5.0


def is_postgres(conn: AsyncConnection) -> bool:
    """Whether `conn` talks to PostgreSQL (the statements that differ by backend ask)."""
    return conn.dialect.name == "postgresql"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_engine(
    url: str, echo: bool, immediate: bool, autocheckpoint: Callable[[], int] | None = None
) -> AsyncEngine:
    """`autocheckpoint`: asked at each new connection (0 while hub/store/checkpoint.py
    checkpoints in the background); None: SQLITE_WAL_AUTOCHECKPOINT."""
    path = make_url(url).database
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    extra: dict[str, Any] = {}
    if make_url(url).get_driver_name() == "aiosqlite":
        extra["module"] = fast_aiosqlite_dbapi()
    if path and path != ":memory:":  # a file: a queue pool (in memory: one static connection)
        # LIFO: the connection used last has the warmest page cache. FIFO took the
        # writer's connections in turn, so a batch often began on a cold cache (under
        # webhook load ~7 preads per request instead of ~0.1).
        extra["pool_use_lifo"] = True
    engine = create_async_engine(
        url, echo=echo, connect_args={"timeout": LOCK_WAIT_SECONDS}, **extra
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy's "begin" hook below, which
        # also makes SAVEPOINT work with the sqlite3 driver.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit we acknowledged survives a power cut; group commit
        # keeps the fsync count low.
        cur.execute("PRAGMA synchronous=FULL")
        # Text search must match what PostgreSQL does: SQLite's lower() folds
        # only ASCII ("ÖZTÜRK" never found "öztürk") and its LIKE ignores ASCII
        # case. Python's str.lower and a case-sensitive LIKE give one behaviour.
        cur.execute("PRAGMA case_sensitive_like=ON")
        cur.execute("PRAGMA foreign_keys=ON")
        # Deleted rows are overwritten with zeros, not only unlinked: after an
        # erasure the person's data must be gone from the file (with the WAL
        # checkpoint in hub/privacy/erase.py).
        cur.execute("PRAGMA secure_delete=ON")
        # Below Twilio's 15 s webhook timeout: a request that waited longer for
        # the write lock would be retried by Twilio while we still work on it.
        cur.execute(f"PRAGMA busy_timeout={int(LOCK_WAIT_SECONDS * 1000)}")
        # Speed only, no effect on durability: the default 2 MB page cache
        # holds a sliver of the index pages a million customers need, so every
        # identity match and last-contact update re-read pages through a system
        # call; 64 MB keeps the hot part in memory, and mmap lets reads go
        # straight to the OS page cache (writes still go through the WAL).
        #
        # That on the write connections only: read connections scan (a campaign's expansion
        # reads through a million customers, segment counts, exports), and every
        # page a connection touches through its mmap stays counted in the node's
        # RSS (once per mapping) until SQLite remaps the file: a 1,000,000-
        # recipient campaign node peaked at 572 MB RSS with 149 MB of its own. With
        # a 16 MB cache and no mmap their pages come from the OS page cache through
        # pread: peak 200 MB, lookups and segment counts as fast (bench/README.md).
        cache_kib = SQLITE_CACHE_KIB if immediate else SQLITE_READ_CACHE_KIB
        cur.execute(f"PRAGMA cache_size=-{cache_kib}")
        cur.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES if immediate else 0}")
        # An ingest batch of ~250 contacts dirties ~1,000 pages (random index
        # leaves), so the default checkpoint every 1,000 WAL pages ran inside
        # nearly every commit, writing each page twice before the caller got
        # its answer. Every 10,000 pages (~40 MB of WAL, every ~10th batch)
        # gave ~1.5x the throughput. (A background checkpointing thread was
        # tried: on 2 cores it competed with the writer and won nothing.)
        # Durability is unchanged: the WAL is fsynced at every commit.
        pages = SQLITE_WAL_AUTOCHECKPOINT if autocheckpoint is None else autocheckpoint()
        cur.execute(f"PRAGMA wal_autocheckpoint={int(pages)}")
        cur.close()
        dbapi_conn.create_function("lower", 1, _lower, deterministic=True)

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"
        dbapi_conn = conn.connection.dbapi_connection
        if isinstance(dbapi_conn, OneHopConnection):
            dbapi_conn.pending_begin = begin  # sent with the first statement
        else:
            conn.exec_driver_sql(begin)

    return engine


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Ping a pooled PostgreSQL connection before use only when it sat idle for
    PING_IDLE_SECONDS, instead of on every checkout (pool_pre_ping).

    The ping is a round trip: ~0.3 ms of a screen-pop lookup's ~1.3 ms (p50, 200 k
    customers, A/B in one process), and one per ingest batch and per request. A
    connection in steady use is known to be alive; one idle for seconds may have
    been cut (a restart of the server, a firewall's idle timeout). A ping that
    fails makes the pool replace the connection and try again, as pre-ping does;
    a connection cut within the idle window fails the one transaction that
    finds it, and the pool then replaces every connection older than the failure.
    """

    @event.listens_for(engine.sync_engine.pool, "checkin")
    def _checked_in(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine.pool, "checkout")
    def _checked_out(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since <= PING_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            raise DisconnectionError(f"idle connection is gone: {exc}") from exc


class Database:
    def __init__(self, config: DatabaseConfig) -> None:
        self.url = config.url
        self.sqlite = is_sqlite(config.url)
        self._autocheckpoint = SQLITE_WAL_AUTOCHECKPOINT
        if self.sqlite:
            self.engine = _sqlite_engine(config.url, config.echo, immediate=False)
            self.write_engine = _sqlite_engine(
                config.url, config.echo, immediate=True, autocheckpoint=self._wal_pages
            )
        else:
            self.engine = create_async_engine(
                config.url,
                echo=config.echo,
                pool_size=config.pool_size,
                max_overflow=config.pool_size,
            )
            _ping_when_idle(self.engine)
            self.write_engine = self.engine
        self._probe: asyncio.Task[None] | None = None
        self._read = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)
        self._write = async_sessionmaker(
            self.write_engine, class_=AsyncSession, expire_on_commit=False
        )

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._read() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A session whose transaction commits on success and rolls back on error."""
        async with self._write() as session, session.begin():
            yield session

    @property
    def sqlite_path(self) -> str | None:
        """The SQLite database file; None for PostgreSQL and in-memory databases."""
        if not self.sqlite:
            return None
        path = make_url(self.url).database
        return path if path and path != ":memory:" else None

    def _wal_pages(self) -> int:
        return self._autocheckpoint

    async def set_autocheckpoint(self, pages: int | None) -> None:
        """SQLite: the write connections' `wal_autocheckpoint` (0: none; None: the default).
        Pooled connections are closed so the next ones are opened with it."""
        self._autocheckpoint = SQLITE_WAL_AUTOCHECKPOINT if pages is None else pages
        if self.sqlite:
            await self.write_engine.dispose()

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:  # readiness probe: any failure means "not ready"
            log.warning("database ping failed", exc_info=True)
            return False

    async def write_refusal(self, within: float) -> str | None:
        """None when a write commits within `within` seconds; else why not.

        /readyz asks this, not `ping`: a SELECT answers on a full disk and
        behind a held write lock, where every webhook would fail. A probe that
        overruns is left to finish on its own (cancelling it would wait for
        the driver anyway), and while it waits the answer is "not ready".
        """
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._write_probe())
        # else: the previous probe is still waiting; its commit answers this one too.
        done, _ = await asyncio.wait({self._probe}, timeout=within)
        if not done:
            return f"a write did not commit within {within:g} s (locked or stalled)"
        try:
            self._probe.result()
        except Exception as exc:  # disk full, read-only, unreachable: all "not ready"
            log.warning("database write probe failed", exc_info=True)
            return f"a write failed: {type(exc).__name__}: {str(exc)[:200]}"
        return None

    async def _write_probe(self) -> None:
        async with self.write_engine.begin() as conn:
            now = datetime.now(UTC)
            done = await conn.execute(update(health_probe_t).values(checked_at=now))
            if done.rowcount == 0:
                await conn.execute(insert(health_probe_t).values(id=1, checked_at=now))

    async def close(self) -> None:
        await self.engine.dispose()
        if self.write_engine is not self.engine:
            await self.write_engine.dispose()


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` means "the database is not there right now", not "this data is bad".

    Retrying later is right for an outage and wrong for a bug: a bug retried
    forever holds webhooks at 503 and mail unstored with no traceback. So
    this looks at what the driver actually said, through SQLAlchemy's
    wrapper and the exception chain:

    - no connection at all: refused, reset, timed out (OSError, TimeoutError),
      a connection SQLAlchemy found dead (`connection_invalidated`);
    - PostgreSQL (asyncpg): SQLSTATE class 08 (connection exception), 53300
      (too many connections), 57P01-57P03 (shutting down, crashed, starting
      up), or a client-side "connection is closed";
    - SQLite: busy or locked, I/O errors, cannot open, disk full.

    A syntax error, a missing column or too many query arguments is a bug
    and is not an outage.
    """
    for err in _chain(exc):
        if isinstance(err, OSError | TimeoutError):
            return True
        if isinstance(err, DBAPIError) and err.connection_invalidated:
            return True
        sqlstate = getattr(err, "sqlstate", None)
        if isinstance(sqlstate, str) and (
            sqlstate.startswith("08") or sqlstate in _PG_OUTAGE_STATES
        ):
            return True
        if (
            type(err).__module__.startswith("asyncpg")
            and "connection" in str(err).lower()
            and ("closed" in str(err).lower() or "does not exist" in str(err).lower())
        ):
            return True
        code = getattr(err, "sqlite_errorcode", None)
        if isinstance(code, int) and code & 0xFF in _SQLITE_OUTAGE_CODES:
            return True
    return False


def is_transient(exc: BaseException) -> bool:
    """A conflict between concurrent transactions that a retry resolves: PostgreSQL's
    deadlock_detected (40P01) and serialization_failure (40001). The database chose
    this transaction to abort; nothing is wrong with the data."""
    return any(getattr(err, "sqlstate", None) in _PG_TRANSIENT_STATES for err in _chain(exc))


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc`, the driver error SQLAlchemy wrapped (`orig`), and their causes."""
    out: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo and len(out) < 8:
        err = todo.pop(0)
        if err is None or err in out:
            continue
        out.append(err)
        todo += [getattr(err, "orig", None), err.__cause__, err.__context__]
    return out


# 53300 too_many_connections; 57P01 admin_shutdown, 57P02 crash_shutdown,
# 57P03 cannot_connect_now (starting up).
_PG_OUTAGE_STATES = frozenset({"53300", "57P01", "57P02", "57P03"})
_PG_TRANSIENT_STATES = frozenset({"40P01", "40001"})
# SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_PROTOCOL.
_SQLITE_OUTAGE_CODES = frozenset({5, 6, 10, 13, 14, 15})
