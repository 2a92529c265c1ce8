"""Multi-row inserts that return the new ids, fast on both backends (ingest and import)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Insert, Select, Table, column, func, select
from sqlalchemy import table as table_clause
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.store.sqlite_driver import defer_many

# Built once per table: `defer_many` caches its compiled form per statement object.
_INSERTS: dict[str, Insert] = {}


def insert_of(table: Table) -> Insert:
    if table.name not in _INSERTS:
        _INSERTS[table.name] = table.insert()
    return _INSERTS[table.name]


_TOPS: dict[str, Select[Any]] = {}
_SQLITE_SEQUENCE = table_clause("sqlite_sequence", column("name"), column("seq"))


def _top_id(table: Table) -> Select[Any]:
    """The largest id of `table` in one statement (one worker-thread round trip).

    AUTOINCREMENT tables (hub.store.models.NEVER_REUSE_IDS) continue after the
    largest id ever used, deleted ones included, which SQLite keeps in
    sqlite_sequence: the larger of the two, read together (two statements cost
    one more round trip per table in every ingest batch).
    """
    if table.name not in _TOPS:
        top: ColumnElement[Any] = func.coalesce(select(func.max(table.c.id)).scalar_subquery(), 0)
        if table.kwargs.get("sqlite_autoincrement"):
            used = select(_SQLITE_SEQUENCE.c.seq).where(_SQLITE_SEQUENCE.c.name == table.name)
            # SQLite's max() of two arguments is the larger one (a scalar function).
            top = func.max(top, func.coalesce(used.scalar_subquery(), 0))
        _TOPS[table.name] = select(top)
    return _TOPS[table.name]


_FIRSTS: dict[tuple[str, ...], Select[Any]] = {}


async def first_ids(conn: AsyncConnection, tables: list[Table]) -> dict[str, int]:
    """SQLite: the id `insert_returning_ids` would give each table's first new row, read
    for all of them in one statement (an ingest batch inserts into up to three tables;
    a statement each was a round trip each). Empty on other databases, which return ids.
    The caller's transaction must hold the write lock (see insert_returning_ids)."""
    if conn.dialect.name != "sqlite" or not tables:
        return {}
    names = tuple(t.name for t in tables)
    if names not in _FIRSTS:  # built once: a new statement per batch costs its cache key
        _FIRSTS[names] = select(*[_top_id(t).scalar_subquery() for t in tables])
    row = (await conn.execute(_FIRSTS[names])).one()
    return {t.name: int(top or 0) + 1 for t, top in zip(tables, row, strict=True)}


async def insert_returning_ids(
    conn: AsyncConnection, table: Table, rows: list[dict[str, Any]], first: int | None = None
) -> list[int]:
    """Insert `rows` in one round trip where possible; their new ids, in row order.

    PostgreSQL: INSERT .. RETURNING, which SQLAlchemy keeps in parameter order
    with multi-row statements. SQLite cannot promise the order of a multi-row
    RETURNING, so SQLAlchemy would fall back to one INSERT per row (one worker
    thread round trip each: ~0.5 ms per row). Instead the ids are chosen here.
    The caller's transaction must hold SQLite's write lock (our write engine
    begins IMMEDIATE), so no other connection can insert before it commits,
    and max(id)+1, +2, ... are exactly the ids SQLite would have given (rowid
    tables without AUTOINCREMENT). Were that ever wrong, the primary key would
    refuse the row, not overwrite one. `first`: from `first_ids`, read earlier in the
    same transaction.
    """
    if not rows:
        return []
    if conn.dialect.name != "sqlite":
        result = await conn.execute(
            table.insert().returning(table.c.id, sort_by_parameter_order=True), rows
        )
        return [r.id for r in result]
    if first is None:
        first = ((await conn.execute(_top_id(table))).scalar() or 0) + 1
    ids = list(range(first, first + len(rows)))
    for row, new_id in zip(rows, ids, strict=True):
        row["id"] = new_id
    # The ids are known: the insert rides along with the transaction's next statement.
    await defer_many(conn, insert_of(table), rows)
    return ids
