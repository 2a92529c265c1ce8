"""insert_returning_ids: the ids the database would have given, deleted ones never reused."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, select

from hub.store.bulk import insert_returning_ids
from hub.store.db import Database
from hub.store.models import utcnow
from hub.store.tables import customer_t, team_t

pytestmark = pytest.mark.db


async def _insert(db: Database, *names: str) -> list[int]:
    async with db.write_engine.begin() as conn:
        return await insert_returning_ids(conn, team_t, [{"name": n} for n in names])


async def _customers(db: Database, *names: str) -> list[int]:
    now = utcnow()
    rows = [
        {"name": n, "kind": "lead", "custom": {}, "created_at": now, "updated_at": now}
        for n in names
    ]
    async with db.write_engine.begin() as conn:
        return await insert_returning_ids(conn, customer_t, rows)


async def test_ids_follow_the_largest_and_are_returned_in_row_order(db: Database) -> None:
    first = await _insert(db, "A", "B", "C")
    assert first == [first[0], first[0] + 1, first[0] + 2]
    async with db.engine.connect() as conn:
        stored = (
            await conn.execute(select(team_t.c.id, team_t.c.name).order_by(team_t.c.id))
        ).all()
    assert [tuple(r) for r in stored] == list(zip(first, ["A", "B", "C"], strict=True))


async def test_a_deleted_largest_id_is_not_given_again(db: Database) -> None:
    """customer is an AUTOINCREMENT table on SQLite (an erased customer's id must not name
    someone else later): the next id comes from sqlite_sequence, read in the same
    statement as max(id); PostgreSQL's sequence never goes back."""
    ids = await _customers(db, "A", "B")
    async with db.write_engine.begin() as conn:
        await conn.execute(delete(customer_t).where(customer_t.c.id == ids[1]))
    assert await _customers(db, "C") == [ids[1] + 1]
