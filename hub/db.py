"""Engines and sessions for SQLite (embedded) and PostgreSQL.

SQLite allows one writer at a time. A deferred transaction that reads and
then writes can fail with SQLITE_BUSY at once instead of waiting, so writes go
through `write()`, whose transactions start with BEGIN IMMEDIATE and wait
(busy_timeout) for the lock; reads go through `read()` and never block in WAL
mode. On PostgreSQL both are the same engine.

With aiosqlite every database call is a round trip to the connection's worker
thread (~0.1 ms on a small VM: two cross-thread wake-ups), and SQLAlchemy's
stock adapter makes four of them per SELECT (cursor, execute, fetchall, close)
and three per INSERT/UPDATE. `_OneHopCursor` does the same work in one trip;
that alone roughly halves the time of a screen-pop lookup and of an ingest batch.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any

import aiosqlite
from sqlalchemy import event, text
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.sql.dml import UpdateBase
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.config import DatabaseConfig

log = logging.getLogger(__name__)


SQLITE_CACHE_KIB = 64 * 1024
SQLITE_MMAP_BYTES = 1024**3
SQLITE_WAL_AUTOCHECKPOINT = 10_000


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _run_in_worker(
    conn: aiosqlite.Connection, begin: str | None, operation: str, parameters: Any, many: bool
) -> tuple[Any, list[Any] | None, int | None, int]:
    """Runs on aiosqlite's worker thread: the whole statement, results included."""
    cursor = conn._conn.cursor()
    try:
        if begin is not None:
            cursor.execute(begin)
        if many:
            cursor.executemany(operation, parameters)
        else:
            cursor.execute(operation, () if parameters is None else parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else None
        return description, rows, cursor.lastrowid, cursor.rowcount
    finally:
        cursor.close()


class _OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    """SQLAlchemy's aiosqlite cursor, but one worker-thread round trip per statement.

    Results are the same as the stock cursor's: rows fetched eagerly,
    `lastrowid`/`rowcount` set for DML and -1 for queries. It relies on
    aiosqlite's `_execute`/`_conn` (SQLAlchemy's own adapter uses `_conn` and
    `_tx` too); `_fast_aiosqlite_dbapi` falls back to the stock cursor when
    they are missing.
    """

    __slots__ = ()

    def _run(self, operation: str, parameters: Any, many: bool) -> None:
        conn: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        adapted: _OneHopConnection = self._adapt_connection  # type: ignore[assignment]
        begin, adapted.pending_begin = adapted.pending_begin, None
        try:
            description, rows, lastrowid, rowcount = self.await_(
                conn._execute(_run_in_worker, conn, begin, operation, parameters, many)  # type: ignore[no-untyped-call]
            )
        except Exception as error:
            self._adapt_connection._handle_exception(error)
        self.description = description
        if description:
            self.lastrowid = self.rowcount = -1
            self._rows.clear()
            self._rows.extend(rows or ())
        else:
            self.lastrowid = lastrowid
            self.rowcount = rowcount

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        self._run(operation, parameters, many=False)

    def executemany(self, operation: Any, seq_of_parameters: Sequence[Any]) -> Any:
        self._run(operation, seq_of_parameters, many=True)
        self.description = None


class _OneHopConnection(AsyncAdapt_aiosqlite_connection):
    """Also defers the transaction's BEGIN into the trip of its first statement.

    Nothing can happen on this connection between the two, so the
    transaction is the same, one round trip cheaper (a screen-pop lookup is
    five trips in all). A transaction that runs no statement never begins,
    and its COMMIT/ROLLBACK are then no-ops in sqlite3, as they should be.
    """

    __slots__ = ("pending_begin",)

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        self.pending_begin: str | None = None

    def cursor(self, server_side: bool = False) -> AsyncAdapt_aiosqlite_cursor:
        if server_side:  # streaming results: keep the stock, row-by-row cursor
            self._flush_begin()
            return super().cursor(server_side=True)
        return _OneHopCursor(self)

    def _flush_begin(self) -> None:
        begin, self.pending_begin = self.pending_begin, None
        if begin is not None:
            super().execute(begin)

    def execute(self, *args: Any, **kw: Any) -> Any:
        self._flush_begin()
        return super().execute(*args, **kw)

    def commit(self) -> None:
        self.pending_begin = None
        super().commit()

    def rollback(self) -> None:
        self.pending_begin = None
        super().rollback()


class _OneHopDbapi(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> AsyncAdapt_aiosqlite_connection:
        adapted = super().connect(*arg, **kw)
        if type(adapted) is AsyncAdapt_aiosqlite_connection:  # not the sync-fallback kind
            return _OneHopConnection(self, adapted._connection)
        return adapted


def _fast_aiosqlite_dbapi() -> AsyncAdapt_aiosqlite_dbapi:
    if hasattr(aiosqlite.Connection, "_execute") and hasattr(aiosqlite.Connection, "_conn"):
        return _OneHopDbapi(aiosqlite, sqlite3)
    log.warning("aiosqlite internals changed; using the slower stock SQLAlchemy adapter")
    return AsyncAdapt_aiosqlite_dbapi(aiosqlite, sqlite3)


def _sqlite_engine(url: str, echo: bool, immediate: bool) -> AsyncEngine:
    path = make_url(url).database
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    extra: dict[str, Any] = {}
    if make_url(url).get_driver_name() == "aiosqlite":
        extra["module"] = _fast_aiosqlite_dbapi()
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

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"
        dbapi_conn = conn.connection.dbapi_connection
        if isinstance(dbapi_conn, _OneHopConnection):
            dbapi_conn.pending_begin = begin  # sent with the first statement
        else:
            conn.exec_driver_sql(begin)

    return engine


@dataclass(frozen=True, slots=True)
class _BulkPlan:
    """A DML statement compiled once for SQLite, with how to turn a row dict into DBAPI values."""

    statement: UpdateBase  # kept alive: plans are cached by id(statement)
    sql: str
    keys: tuple[str, ...]  # the row dict keys, in order
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]  # (key index, bind processor)
    constants: tuple[Any, ...]  # processed values of binds the rows do not carry
    order: Callable[[list[Any]], Any]  # keys + constants -> the positional parameters


_bulk_plans: dict[tuple[int, tuple[str, ...]], _BulkPlan | None] = {}


def _bulk_plan(statement: UpdateBase, dialect: Dialect, keys: tuple[str, ...]) -> _BulkPlan | None:
    """None when the statement needs more than plain binds (defaults, expanding IN, ...)."""
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    positions = compiled.positiontup
    if (
        not compiled.positional
        or not positions
        or compiled.insert_prefetch
        or compiled.update_prefetch
        or compiled.post_compile_params
        or compiled.literal_execute_params
        or compiled.escaped_bind_names
    ):
        return None
    index = {key: i for i, key in enumerate(keys)}
    constants: list[Any] = []
    for name in positions:
        bind = compiled.binds[name]
        if name not in index:
            if bind.required or bind.callable is not None:
                return None
            proc = bind.type.dialect_impl(dialect).bind_processor(dialect)
            index[name] = len(keys) + len(constants)
            constants.append(proc(bind.value) if proc else bind.value)
    processors = []
    for i, key in enumerate(keys):
        key_bind = compiled.binds.get(key)
        proc = (
            key_bind.type.dialect_impl(dialect).bind_processor(dialect)
            if key_bind is not None
            else None
        )
        if proc is not None:
            processors.append((i, proc))
    getter = itemgetter(*(index[name] for name in positions))
    order: Callable[[list[Any]], Any] = (
        getter if len(positions) > 1 else lambda values: (getter(values),)
    )
    return _BulkPlan(statement, compiled.string, keys, tuple(processors), tuple(constants), order)


async def execute_many(
    conn: AsyncConnection, statement: UpdateBase, rows: list[dict[str, Any]]
) -> None:
    """`await conn.execute(statement, rows)`, with SQLAlchemy's per-row work done in bulk on SQLite.

    Core builds a parameter dict per row and walks every bind of it (~1 us
    per value); for a 250-contact ingest batch that was the largest Python
    cost after phone-number parsing. Here the statement is compiled once and
    each row becomes a tuple through the same bind processors Core would
    use, so the database receives exactly the same values. Pass a statement
    built once (a module constant): plans are cached by its identity. Rows
    must all have the keys of the first. Other backends use Core unchanged.
    """
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        await conn.execute(statement, rows)
        return
    keys = tuple(rows[0])
    cache_key = (id(statement), keys)
    if cache_key not in _bulk_plans:
        _bulk_plans[cache_key] = _bulk_plan(statement, conn.dialect, keys)
    plan = _bulk_plans[cache_key]
    if plan is None:
        await conn.execute(statement, rows)
        return
    params = []
    processors, constants, order = plan.processors, plan.constants, plan.order
    # The same object in every row (a batch's `now`) is converted once.
    last: dict[int, tuple[Any, Any]] = {}
    for row in rows:
        values = [row[key] for key in keys]
        for i, proc in processors:
            value = values[i]
            seen = last.get(i)
            if seen is not None and seen[0] is value:
                values[i] = seen[1]
            else:
                values[i] = converted = proc(value)
                last[i] = (value, converted)
        values.extend(constants)
        params.append(order(values))
    await conn.exec_driver_sql(plan.sql, params)


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
