"""A faster aiosqlite adapter for SQLAlchemy, and a bulk executor for SQLite.

With aiosqlite every database call is a round trip to the connection's worker
thread (~0.1 ms on a small VM: two cross-thread wake-ups), and SQLAlchemy's
stock adapter makes four of them per SELECT (cursor, execute, fetchall, close)
and three per INSERT/UPDATE. `_OneHopCursor` does the same work in one trip;
that alone roughly halves the time of a screen-pop lookup and of an ingest
batch. `execute_many` skips Core's per-row parameter work for the ingest
writer's multi-row statements. Both only change how SQLite is called, never
what it receives; `tests/` run through them on every SQLite test.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import aiosqlite
from sqlalchemy import Select
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import UpdateBase

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Deferred:
    """A write whose result nobody waits for, run in the trip of the next statement."""

    sql: str
    params: list[Any]
    on_rowcount: Callable[[int], None] | None = None
    rowcount: int = -1


def _run_deferred(cursor: sqlite3.Cursor, begin: str | None, deferred: list[_Deferred]) -> None:
    if begin is not None:
        cursor.execute(begin)
    for write in deferred:
        cursor.executemany(write.sql, write.params)
        write.rowcount = cursor.rowcount


def _run_in_worker(
    conn: aiosqlite.Connection,
    begin: str | None,
    operation: str,
    parameters: Any,
    many: bool,
    deferred: list[_Deferred] = [],  # noqa: B006 (never changed)
) -> tuple[Any, list[Any] | None, int | None, int]:
    """Runs on aiosqlite's worker thread: the whole statement, results included,
    after the BEGIN and the deferred writes it carries."""
    cursor = conn._conn.cursor()
    try:
        _run_deferred(cursor, begin, deferred)
        if many:
            cursor.executemany(operation, parameters)
        else:
            cursor.execute(operation, () if parameters is None else parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else None
        return description, rows, cursor.lastrowid, cursor.rowcount
    finally:
        cursor.close()


def _commit_in_worker(
    conn: aiosqlite.Connection, begin: str | None, deferred: list[_Deferred]
) -> None:
    """Runs on aiosqlite's worker thread: the deferred writes, then COMMIT; on an
    error in a write, ROLLBACK (the caller's commit fails, nothing is half-kept)."""
    cursor = conn._conn.cursor()
    try:
        _run_deferred(cursor, begin, deferred)
    except BaseException:
        conn._conn.rollback()
        raise
    finally:
        cursor.close()
    conn._conn.commit()


def _report(deferred: list[_Deferred]) -> None:
    for write in deferred:
        if write.on_rowcount is not None:
            write.on_rowcount(write.rowcount)


class _OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    """SQLAlchemy's aiosqlite cursor, but one worker-thread round trip per statement.

    Results are the same as the stock cursor's: rows fetched eagerly,
    `lastrowid`/`rowcount` set for DML and -1 for queries. It relies on
    aiosqlite's `_execute`/`_conn` (SQLAlchemy's own adapter uses `_conn` and
    `_tx` too); `fast_aiosqlite_dbapi` falls back to the stock cursor when
    they are missing.
    """

    __slots__ = ()

    def _run(self, operation: str, parameters: Any, many: bool) -> None:
        conn: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        adapted: OneHopConnection = self._adapt_connection  # type: ignore[assignment]
        begin, adapted.pending_begin = adapted.pending_begin, None
        deferred, adapted.deferred = adapted.deferred, []
        try:
            description, rows, lastrowid, rowcount = self.await_(
                conn._execute(_run_in_worker, conn, begin, operation, parameters, many, deferred)  # type: ignore[no-untyped-call]
            )
        except Exception as error:
            self._adapt_connection._handle_exception(error)
        _report(deferred)
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


class OneHopConnection(AsyncAdapt_aiosqlite_connection):
    """Also defers the transaction's BEGIN into the trip of its first statement.

    Nothing can happen on this connection between the two, so the
    transaction is the same, one round trip cheaper (a screen-pop lookup is
    five trips in all). A transaction that runs no statement never begins,
    and its COMMIT/ROLLBACK are then no-ops in sqlite3, as they should be.

    Writes whose outcome the caller does not wait for can be deferred the same
    way (`defer_many`): they run, in order, in the trip of the next statement
    or of the COMMIT, within the same transaction.
    """

    __slots__ = ("deferred", "pending_begin")

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        self.pending_begin: str | None = None
        self.deferred: list[_Deferred] = []

    def cursor(self, server_side: bool = False) -> AsyncAdapt_aiosqlite_cursor:
        if server_side:  # streaming results: keep the stock, row-by-row cursor
            self._flush_begin()
            return super().cursor(server_side=True)
        return _OneHopCursor(self)

    def _flush_begin(self) -> None:
        begin, self.pending_begin = self.pending_begin, None
        deferred, self.deferred = self.deferred, []
        if deferred:
            conn: aiosqlite.Connection = self._connection  # type: ignore[assignment]
            try:
                self.await_(conn._execute(_run_deferred_trip, conn, begin, deferred))  # type: ignore[no-untyped-call]
            except Exception as error:
                self._handle_exception(error)
            _report(deferred)
        elif begin is not None:
            super().execute(begin)

    def execute(self, *args: Any, **kw: Any) -> Any:
        self._flush_begin()
        return super().execute(*args, **kw)

    def commit(self) -> None:
        begin, self.pending_begin = self.pending_begin, None
        deferred, self.deferred = self.deferred, []
        if not deferred:
            super().commit()
            return
        conn: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        try:
            self.await_(conn._execute(_commit_in_worker, conn, begin, deferred))  # type: ignore[no-untyped-call]
        except Exception as error:
            self._handle_exception(error)
        _report(deferred)

    def rollback(self) -> None:
        self.pending_begin = None
        self.deferred = []
        # The pool rolls back every connection it gets back, after a commit too:
        # a trip to the worker thread for nothing when no transaction is open.
        # (sqlite3 reads the flag without touching the database.)
        if self._connection._conn is not None and not self._connection._conn.in_transaction:
            return
        super().rollback()


def _run_deferred_trip(
    conn: aiosqlite.Connection, begin: str | None, deferred: list[_Deferred]
) -> None:
    cursor = conn._conn.cursor()
    try:
        _run_deferred(cursor, begin, deferred)
    finally:
        cursor.close()


class _OneHopDbapi(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> AsyncAdapt_aiosqlite_connection:
        adapted = super().connect(*arg, **kw)
        if type(adapted) is AsyncAdapt_aiosqlite_connection:  # not the sync-fallback kind
            return OneHopConnection(self, adapted._connection)
        return adapted


def fast_aiosqlite_dbapi() -> AsyncAdapt_aiosqlite_dbapi:
    if hasattr(aiosqlite.Connection, "_execute") and hasattr(aiosqlite.Connection, "_conn"):
        return _OneHopDbapi(aiosqlite, sqlite3)
    log.warning("aiosqlite internals changed; using the slower stock SQLAlchemy adapter")
    return AsyncAdapt_aiosqlite_dbapi(aiosqlite, sqlite3)


@dataclass(frozen=True, slots=True)
class _BulkPlan:
    """A DML statement compiled once for SQLite, with how to turn a row dict into DBAPI values."""

    statement: UpdateBase | Select[Any]  # kept alive: plans are cached by id(statement)
    sql: str
    keys: tuple[str, ...]  # the row dict keys, in order
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]  # (key index, bind processor)
    constants: tuple[Any, ...]  # processed values of binds the rows do not carry
    order: Callable[[list[Any]], Any]  # keys + constants -> the positional parameters


_bulk_plans: dict[tuple[int, tuple[str, ...]], _BulkPlan | None] = {}


def _bulk_plan(
    statement: UpdateBase | Select[Any], dialect: Dialect, keys: tuple[str, ...]
) -> _BulkPlan | None:
    """None when the statement needs more than plain binds (defaults, expanding IN, ...).
    Also the plan of a SELECT for hub/store/read_many.py."""
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    positions = compiled.positiontup or []
    if (
        not compiled.positional
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
    order: Callable[[list[Any]], Any]
    if not positions:
        order = lambda values: ()  # noqa: E731
    else:
        getter = itemgetter(*(index[name] for name in positions))
        order = getter if len(positions) > 1 else lambda values: (getter(values),)
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
    plan = _plan_for(statement, conn.dialect, rows)
    if plan is None:
        await conn.execute(statement, rows)
        return
    await conn.exec_driver_sql(plan.sql, _bulk_params(plan, rows))


def _plan_for(
    statement: UpdateBase, dialect: Dialect, rows: list[dict[str, Any]]
) -> _BulkPlan | None:
    """The cached plan for `statement` with the keys of `rows` (None: Core must run it)."""
    keys = tuple(rows[0])
    cache_key = (id(statement), keys)
    if cache_key not in _bulk_plans:
        _bulk_plans[cache_key] = _bulk_plan(statement, dialect, keys)
    return _bulk_plans[cache_key]


def _bulk_params(plan: _BulkPlan, rows: list[dict[str, Any]]) -> list[Any]:
    """The rows as the positional parameters of `plan`, through its bind processors."""
    params = []
    keys, processors, constants, order = plan.keys, plan.processors, plan.constants, plan.order
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
    return params


async def defer_many(
    conn: AsyncConnection,
    statement: UpdateBase,
    rows: list[dict[str, Any]],
    on_rowcount: Callable[[int], None] | None = None,
) -> None:
    """As `execute_many`, but on SQLite the write waits for the connection's next
    trip (its next statement, or the COMMIT) instead of taking one of its own.

    For writes in a transaction whose result nobody needs before the commit:
    several of them then cost one trip to SQLite's worker thread instead of one
    each. An error surfaces at that next statement or commit, which fails the
    transaction as the write itself would have. `on_rowcount` gets the rows
    changed once it ran (`-1` when unknown). Other backends, and statements
    that need more than plain binds, run at once through Core.
    """
    if not rows:
        return
    adapted = None
    if conn.dialect.name == "sqlite":
        fairy = conn.sync_connection.connection if conn.sync_connection else None
        adapted = getattr(fairy, "dbapi_connection", None)
    if isinstance(adapted, OneHopConnection):
        plan = _plan_for(statement, conn.dialect, rows)
        if plan is not None:
            adapted.deferred.append(_Deferred(plan.sql, _bulk_params(plan, rows), on_rowcount))
            return
    result = await conn.execute(statement, rows)
    if on_rowcount is not None:
        on_rowcount(result.rowcount)
