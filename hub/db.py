"""Engines and sessions for SQLite (embedded) and PostgreSQL.

SQLite allows one writer at a time. A deferred transaction that reads and
then writes can fail with SQLITE_BUSY at once instead of waiting, so writes go
through `write()`, whose transactions start with BEGIN IMMEDIATE and wait
(busy_timeout) for the lock; reads go through `read()` and never block in WAL
mode. On PostgreSQL both are the same engine. SQLite connections use the
faster aiosqlite adapter in `hub.sqlite_driver`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.config import DatabaseConfig
from hub.sqlite_driver import OneHopConnection, fast_aiosqlite_dbapi

log = logging.getLogger(__name__)


SQLITE_CACHE_KIB = 64 * 1024
SQLITE_MMAP_BYTES = 1024**3
SQLITE_WAL_AUTOCHECKPOINT = 10_000


def _lower(value: str | None) -> str | None:
    return value.lower() if isinstance(value, str) else value


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_engine(url: str, echo: bool, immediate: bool) -> AsyncEngine:
    path = make_url(url).database
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    extra: dict[str, Any] = {}
    if make_url(url).get_driver_name() == "aiosqlite":
        extra["module"] = fast_aiosqlite_dbapi()
    engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30}, **extra)

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
        cur.execute("PRAGMA busy_timeout=30000")
        # Speed only, no effect on durability: the default 2 MB page cache
        # holds a sliver of the index pages a million customers need, so every
        # identity match and last-contact update re-read pages through a system
        # call; 64 MB per connection keeps the hot part in memory, and mmap lets
        # reads go straight to the OS page cache (writes still go through the WAL).
        cur.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        cur.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
        # An ingest batch of ~250 contacts dirties ~1,000 pages (random index
        # leaves), so the default checkpoint every 1,000 WAL pages ran inside
        # nearly every commit, writing each page twice before the caller got
        # its answer. Every 10,000 pages (~40 MB of WAL, every ~10th batch)
        # gave ~1.5x the throughput. (A background checkpointing thread was
        # tried: on 2 cores it competed with the writer and won nothing.)
        # Durability is unchanged: the WAL is fsynced at every commit.
        cur.execute(f"PRAGMA wal_autocheckpoint={SQLITE_WAL_AUTOCHECKPOINT}")
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


class Database:
    def __init__(self, config: DatabaseConfig) -> None:
        self.url = config.url
        self.sqlite = is_sqlite(config.url)
        if self.sqlite:
            self.engine = _sqlite_engine(config.url, config.echo, immediate=False)
            self.write_engine = _sqlite_engine(config.url, config.echo, immediate=True)
        else:
            self.engine = create_async_engine(
                config.url,
                echo=config.echo,
                pool_size=config.pool_size,
                max_overflow=config.pool_size,
                pool_pre_ping=True,
            )
            self.write_engine = self.engine
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

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:  # readiness probe: any failure means "not ready"
            log.warning("database ping failed", exc_info=True)
            return False

    async def close(self) -> None:
        await self.engine.dispose()
        if self.write_engine is not self.engine:
            await self.write_engine.dispose()


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` means "the database is not there right now", not "this data is bad".

    OperationalError covers a locked SQLite file and most connection failures;
    asyncpg reports a connection that died mid-transaction (a PostgreSQL
    restart, a failover, a reset) as InterfaceError or as a DBAPIError with
    `connection_invalidated`. Retrying later is right for all of these;
    quarantining or refusing the data would be wrong.
    """
    if isinstance(exc, OperationalError | InterfaceError | OSError | TimeoutError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    orig = getattr(exc, "orig", None)
    return orig is not None and type(orig).__name__ in _DRIVER_OUTAGES


# asyncpg's names for "no connection" (wrapped by SQLAlchemy as a plain DBAPIError).
_DRIVER_OUTAGES = frozenset(
    {
        "ConnectionDoesNotExistError",
        "ConnectionFailureError",
        "CannotConnectNowError",
        "InterfaceError",
        "AdminShutdownError",
        "CrashShutdownError",
        "TooManyConnectionsError",
    }
)
