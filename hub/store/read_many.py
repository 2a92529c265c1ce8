"""Several small SELECTs in one round trip (`fetch_many`).

A read that needs a handful of small queries (a caller card: tags, open
conversations, recent interactions, open tasks) spent most of its time in
round trips and in Core's per-statement work, not in the database: each
query answers in tens of microseconds from cache.

- SQLite: each statement is compiled once, all run in one trip to
  aiosqlite's worker thread, and rows become named tuples through the same
  result processors Core uses.
- PostgreSQL: one statement whose columns are `array((SELECT row(...) ...))`
  of each query (its WHERE, ORDER BY and LIMIT kept; the order of an array
  built from an ordered subquery is that order); asyncpg decodes the
  records with their native types, and the same result processors apply.

Callers read the same values either way (`row.id`, datetimes as datetimes).
Anything that cannot be done so — an expanding IN or other render-time
parameters on SQLite, unnamed or oddly named columns, types whose result
processor needs the driver's type code, clashing parameter names, a
transaction with writes waiting to ride along, an error on SQLite — runs
through Core one statement at a time, so the answer never depends on which
path ran. (On PostgreSQL an error in the combined statement is raised as
Core raises it: the transaction is aborted then anyway.)
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from keyword import iskeyword
from typing import Any

import aiosqlite
from sqlalchemy import Select, func, select
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnClause, Label

from hub.store.sqlite_driver import OneHopConnection, _bulk_params, _bulk_plan, _BulkPlan


@dataclass(frozen=True, slots=True)
class _ReadPlan:
    """A SELECT compiled once for SQLite (the bulk executor's plan) and how to read its rows."""

    bind: _BulkPlan  # its SQL, and the parameter dict as positional values
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]  # (column index, result processor)
    row: Any  # the named tuple type of a row


# Plans keep their statements alive (ids are their keys); module constants make a
# few dozen. Past this many, someone builds statements per call: those go to Core.
MAX_PLANS = 1024
_plans: dict[tuple[int, tuple[str, ...]], _ReadPlan | None] = {}


def _read_plan(statement: Select[Any], dialect: Dialect, keys: tuple[str, ...]) -> _ReadPlan | None:
    """None when the statement needs more than plain binds (expanding IN, literal binds...)
    or has columns a named tuple cannot carry."""
    bind = _bulk_plan(statement, dialect, keys)
    reader = _row_reader(statement, dialect) if bind is not None else None
    if bind is None or reader is None:
        return None
    row, processors = reader
    return _ReadPlan(bind, processors, row)


def _fetch_in_worker(
    conn: aiosqlite.Connection, begin: str | None, queries: list[tuple[str, tuple[Any, ...]]]
) -> list[list[tuple[Any, ...]]]:
    """Runs on aiosqlite's worker thread: the transaction's BEGIN, then every query."""
    cursor = conn._conn.cursor()
    try:
        if begin is not None:
            cursor.execute(begin)
        out = []
        for sql, params in queries:
            cursor.execute(sql, params)
            out.append(cursor.fetchall())
        return out
    finally:
        cursor.close()


async def fetch_many(
    conn: AsyncConnection, queries: Sequence[tuple[Select[Any], dict[str, Any]]]
) -> list[list[Any]]:
    """The rows of each (statement, parameters), in order, in one round trip where the
    backend allows. Pass statements built once (module constants): plans are cached
    by their identity."""
    fast = None
    if conn.dialect.name == "sqlite":
        fast = await _fetch_sqlite(conn, queries)
    elif conn.dialect.name == "postgresql" and len(queries) > 1:
        fast = await _fetch_postgres(conn, queries)
    if fast is not None:
        return fast
    return [list(await conn.execute(statement, params)) for statement, params in queries]


async def _fetch_sqlite(
    conn: AsyncConnection, queries: Sequence[tuple[Select[Any], dict[str, Any]]]
) -> list[list[Any]] | None:
    fairy = conn.sync_connection.connection if conn.sync_connection else None
    adapted = getattr(fairy, "dbapi_connection", None)
    if not isinstance(adapted, OneHopConnection) or adapted.deferred:
        return None
    plans: list[_ReadPlan] = []
    sql_params: list[tuple[str, tuple[Any, ...]]] = []
    for statement, params in queries:
        keys = tuple(params)
        cache_key = (id(statement), keys)
        if cache_key not in _plans:
            if len(_plans) >= MAX_PLANS:
                return None  # statements built per call: Core and its own cache
            _plans[cache_key] = _read_plan(statement, conn.dialect, keys)
        plan = _plans[cache_key]
        if plan is None:
            return None
        plans.append(plan)
        sql_params.append((plan.bind.sql, _bulk_params(plan.bind, [params])[0]))
    if not conn.in_transaction():
        # As Core's autobegin would: the queries must read one snapshot, and the
        # BEGIN (deferred into the next trip by db.py) then goes with them.
        await conn.begin()
    raw: aiosqlite.Connection = adapted._connection  # type: ignore[assignment]
    begin, adapted.pending_begin = adapted.pending_begin, None
    try:
        results = await raw._execute(_fetch_in_worker, raw, begin, sql_params)  # type: ignore[no-untyped-call]
    except sqlite3.Error:
        # Core runs them again and reports the error its usual way; a BEGIN that
        # failed is still to be sent (reads change nothing, so nothing is done twice).
        if begin is not None and not raw._conn.in_transaction:
            adapted.pending_begin = begin
        return None
    return [
        _rows(plan.row, plan.processors, rows) for plan, rows in zip(plans, results, strict=True)
    ]


def _rows(
    row: Any, processors: tuple[tuple[int, Callable[[Any], Any]], ...], raw: Sequence[Any]
) -> list[Any]:
    """Raw value tuples as named tuples, each value through Core's result processor."""
    make = row._make
    if not processors:
        return [make(r) for r in raw]
    converted = []
    for r in raw:
        values = list(r)
        for i, proc in processors:
            values[i] = proc(values[i])
        converted.append(make(values))
    return converted


def _row_reader(
    statement: Select[Any], dialect: Dialect
) -> tuple[Any, tuple[tuple[int, Callable[[Any], Any]], ...]] | None:
    """The named tuple type of a row of `statement` and its columns' result processors."""
    columns = list(statement.selected_columns)
    # Named columns and labels only: an unlabelled expression's name is Core's to make up
    # (`count_1`), and a name like `from` or `_x` cannot be a named tuple's field.
    if not all(isinstance(column, (ColumnClause, Label)) for column in columns):
        return None
    names = [str(column.key) for column in columns]
    if len(set(names)) != len(names) or not all(
        n.isidentifier() and not iskeyword(n) and not n.startswith("_") for n in names
    ):
        return None
    try:
        processors = tuple(
            (i, proc)
            for i, column in enumerate(columns)
            if (proc := column.type._cached_result_processor(dialect, None)) is not None
        )
    except Exception:  # e.g. asyncpg's NUMERIC wants the column's type code: Core's turn
        return None
    return namedtuple("row", names), processors


@dataclass(frozen=True, slots=True)
class _PgPlan:
    statements: tuple[Select[Any], ...]  # kept alive: plans are cached by their ids
    combined: Select[Any]
    readers: tuple[tuple[Any, tuple[tuple[int, Callable[[Any], Any]], ...]], ...]


_pg_plans: dict[tuple[int, ...], _PgPlan | None] = {}


def _pg_plan(statements: tuple[Select[Any], ...], dialect: Dialect) -> _PgPlan | None:
    readers = []
    for statement in statements:
        reader = _row_reader(statement, dialect)
        if reader is None:
            return None
        readers.append(reader)
    combined = select(
        *(
            func.array(
                statement.with_only_columns(func.row(*statement.selected_columns)).scalar_subquery()
            ).label(f"part_{i}")
            for i, statement in enumerate(statements)
        )
    )
    return _PgPlan(statements, combined, tuple(readers))


async def _fetch_postgres(
    conn: AsyncConnection, queries: Sequence[tuple[Select[Any], dict[str, Any]]]
) -> list[list[Any]] | None:
    params: dict[str, Any] = {}
    for _, own in queries:
        for key, value in own.items():
            if key in params and params[key] != value:
                return None  # one name, two values: the combined statement cannot say both
            params[key] = value
    statements = tuple(statement for statement, _ in queries)
    cache_key = tuple(map(id, statements))
    if cache_key not in _pg_plans:
        if len(_pg_plans) >= MAX_PLANS:
            return None  # statements built per call: Core and its own cache
        _pg_plans[cache_key] = _pg_plan(statements, conn.dialect)
    plan = _pg_plans[cache_key]
    if plan is None:
        return None
    parts = (await conn.execute(plan.combined, params)).one()
    return [
        _rows(row, processors, part)
        for (row, processors), part in zip(plan.readers, parts, strict=True)
    ]
