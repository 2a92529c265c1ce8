"""hub.store.read_many.py `fetch_many`: several SELECTs in one trip to SQLite's worker
thread, with the same rows Core gives, and Core itself whenever that cannot be done."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import OperationalError

from hub.config import DatabaseConfig
from hub.store.columns import UTCDateTime
from hub.store.db import Database
from hub.store.read_many import fetch_many
from hub.store.sqlite_driver import defer_many

meta = MetaData()
note_t = Table(
    "note",
    meta,
    Column("id", Integer, primary_key=True),
    Column("owner", Integer, nullable=False),
    Column("text", String, nullable=True),
    Column("at", UTCDateTime(), nullable=True),
    Column("done", Boolean, nullable=False),
    Column("meta", JSON, nullable=True),
)
CID = bindparam("cid")
NEWEST = (
    select(note_t)
    .where(note_t.c.owner == CID, note_t.c.done.is_(False), note_t.c.text != "hidden")
    .order_by(note_t.c.at.desc(), note_t.c.id.desc())
    .limit(3)
)
TEXTS = select(note_t.c.id, note_t.c.text).where(note_t.c.owner == CID).order_by(note_t.c.id)
COUNT_ALL = select(note_t.c.owner, note_t.c.done).order_by(note_t.c.id)  # no parameters
BY_IDS = select(note_t.c.id).where(note_t.c.id.in_(bindparam("ids", expanding=True)))
SET_TEXT = update(note_t).where(note_t.c.id == bindparam("b_id")).values(text=bindparam("b_text"))
T0 = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(DatabaseConfig(url=f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"))
    async with database.write_engine.begin() as conn:
        await conn.run_sync(meta.create_all)
        await conn.execute(
            insert(note_t),
            [
                {
                    "id": i,
                    "owner": 1 + i % 2,
                    "text": None if i == 3 else ("hidden" if i == 5 else f"n{i} ü"),
                    "at": None if i == 4 else T0 + timedelta(hours=i),
                    "done": i == 7,
                    "meta": {"i": i, "tags": ["a", None]} if i % 3 else None,
                }
                for i in range(1, 10)
            ],
        )
    try:
        yield database
    finally:
        await database.close()


QUERIES: list[tuple[Any, dict[str, Any]]] = [
    (NEWEST, {"cid": 1}),
    (NEWEST, {"cid": 2}),
    (TEXTS, {"cid": 2}),
    (TEXTS, {"cid": 99}),
    (COUNT_ALL, {}),
]


async def _core(db: Database) -> list[list[tuple[Any, ...]]]:
    async with db.engine.connect() as conn:
        return [
            [tuple(r) for r in await conn.execute(statement, params)]
            for statement, params in QUERIES
        ]


async def test_one_trip_with_the_begin_and_rows_as_core_reads_them(
    db: Database, trips: list[str]
) -> None:
    expected = await _core(db)
    async with db.engine.connect() as conn:
        trips.clear()
        got = await fetch_many(conn, QUERIES)
        assert trips == ["_fetch_in_worker"]  # the transaction's BEGIN went with it
        assert conn.in_transaction()
    assert [[tuple(r) for r in rows] for rows in got] == expected
    # Values converted as Core converts them: aware datetimes, JSON, booleans, NULLs.
    newest_1 = got[1]
    assert [(r.id, r.at, r.done, r.meta) for r in newest_1] == [
        (9, T0 + timedelta(hours=9), False, None),
        (1, T0 + timedelta(hours=1), False, {"i": 1, "tags": ["a", None]}),
    ]
    assert expected[1] == [tuple(r) for r in newest_1]
    assert got[3] == [] and len(got[4]) == 9
    assert [(r.id, r.text) for r in got[2]] == [
        (1, "n1 ü"), (3, None), (5, "hidden"), (7, "n7 ü"), (9, "n9 ü")
    ]  # fmt: skip


async def test_statements_it_cannot_plan_run_through_core(db: Database, trips: list[str]) -> None:
    async with db.engine.connect() as conn:
        trips.clear()
        got = await fetch_many(conn, [(BY_IDS, {"ids": [2, 4, 99]}), (TEXTS, {"cid": 1})])
        assert len(trips) == 2  # one Core statement each
    assert [[tuple(r) for r in rows] for rows in got] == [
        [(2,), (4,)],
        [(2, "n2 ü"), (4, "n4 ü"), (6, "n6 ü"), (8, "n8 ü")],
    ]


async def test_waiting_writes_are_not_overtaken(db: Database, trips: list[str]) -> None:
    async with db.write_engine.begin() as conn:
        await conn.execute(select(note_t.c.id).limit(1))
        await defer_many(conn, SET_TEXT, [{"b_id": 2, "b_text": "changed"}])
        trips.clear()
        (rows,) = await fetch_many(conn, [(TEXTS, {"cid": 1})])
        assert trips == ["_run_in_worker"]  # through Core, which runs the write first
        assert rows[0].text == "changed"


async def test_an_error_surfaces_as_cores_and_the_connection_stays_usable(
    db: Database,
) -> None:
    async with db.write_engine.begin() as conn:
        await conn.exec_driver_sql("DROP TABLE note")
    async with db.engine.connect() as conn:
        with pytest.raises(OperationalError, match="no such table: note"):
            await fetch_many(conn, [(TEXTS, {"cid": 1})])
    async with db.engine.connect() as conn:
        assert (await conn.exec_driver_sql("SELECT 7")).scalar() == 7


async def test_columns_a_named_tuple_cannot_carry_go_through_core(db: Database) -> None:
    unnamed = select(func.count()).select_from(note_t)  # Core names it count_1
    keyword = select(note_t.c.id.label("from"), note_t.c.text.label("_hidden")).order_by(
        note_t.c.id
    )
    async with db.engine.connect() as conn:
        got = await fetch_many(conn, [(unnamed, {}), (keyword, {})])
        expected = [list(await conn.execute(unnamed)), list(await conn.execute(keyword))]
    assert got == expected
    assert got[0][0].count_1 == 9 and got[1][0]._mapping["from"] == 1
