"""hub/store/sqlite_driver.py `defer_many`: on SQLite a deferred write runs in the trip
of the transaction's next statement or of its COMMIT, in order, and fails the
transaction like a write of its own would."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, bindparam, insert, select, text, update

from hub.config import DatabaseConfig
from hub.store.db import Database
from hub.store.sqlite_driver import defer_many

meta = MetaData()
item_t = Table("item", meta, Column("id", Integer, primary_key=True), Column("v", Integer))
SET_V = update(item_t).where(item_t.c.id == bindparam("b_id")).values(v=bindparam("b_v"))


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(DatabaseConfig(url=f"sqlite+aiosqlite:///{tmp_path / 'd.db'}"))
    async with database.write_engine.begin() as conn:
        await conn.execute(text("CREATE TABLE item (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)"))
        await conn.execute(insert(item_t), [{"id": i, "v": 0} for i in (1, 2, 3)])
    try:
        yield database
    finally:
        await database.close()


async def _values(db: Database) -> dict[int, int]:
    async with db.engine.connect() as conn:
        return {row.id: row.v for row in await conn.execute(select(item_t))}


async def test_deferred_writes_ride_with_the_next_statement_and_the_commit(
    db: Database, trips: list[str]
) -> None:
    counts: list[int] = []
    async with db.write_engine.begin() as conn:
        trips.clear()
        await defer_many(
            conn, SET_V, [{"b_id": 1, "b_v": 10}, {"b_id": 2, "b_v": 20}], counts.append
        )
        await defer_many(conn, SET_V, [{"b_id": 9, "b_v": 90}], counts.append)  # no such row
        assert trips == [] and counts == []
        # The query sees the writes: they ran first, in its trip.
        assert (await conn.execute(select(item_t.c.v).where(item_t.c.id == 1))).scalar() == 10
        assert len(trips) == 1 and counts == [2, 0]
        await defer_many(conn, SET_V, [{"b_id": 3, "b_v": 30}])
    # The last write went with the COMMIT; the pool's rollback on return, with no
    # transaction open, takes no trip.
    assert trips == ["_run_in_worker", "_commit_in_worker"]
    assert await _values(db) == {1: 10, 2: 20, 3: 30}


async def test_a_failing_deferred_write_fails_the_commit_and_keeps_nothing(db: Database) -> None:
    with pytest.raises(Exception, match="NOT NULL"):
        async with db.write_engine.begin() as conn:
            await conn.execute(SET_V, {"b_id": 1, "b_v": 5})
            await defer_many(conn, SET_V, [{"b_id": 2, "b_v": None}])
    assert await _values(db) == {1: 0, 2: 0, 3: 0}
    async with db.write_engine.begin() as conn:  # the connection is usable again
        await defer_many(conn, SET_V, [{"b_id": 3, "b_v": 3}])
    assert await _values(db) == {1: 0, 2: 0, 3: 3}


async def test_a_rollback_drops_deferred_writes(db: Database) -> None:
    async with db.write_engine.connect() as conn:
        await conn.begin()
        await defer_many(conn, SET_V, [{"b_id": 1, "b_v": 7}])
        await conn.rollback()
        async with conn.begin():
            await defer_many(conn, SET_V, [{"b_id": 2, "b_v": 8}])
    assert await _values(db) == {1: 0, 2: 8, 3: 0}
