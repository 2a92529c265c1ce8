"""The caller card's parts read by `fetch_many` (hub/store/read_many.py) in one round trip
equal what Core reads statement by statement, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Numeric, cast, event, func, literal, select

from channels.base import Channel, InboundContact
from hub.records import lookup
from hub.runtime import Hub
from hub.store.db import Database
from hub.store.models import CustomerTag, Task
from hub.store.read_many import fetch_many
from hub.store.tables import task_t

T0 = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # the night the clocks go back in Berlin


async def test_the_cards_parts_in_one_round_trip_are_what_core_reads(
    hub: Hub, db: Database
) -> None:
    for i in range(7):
        r = await hub.ingestor.ingest(
            InboundContact(
                Channel.SMS,
                "+491701234567",
                text=f"m{i} ü",
                provider_id=f"RM{i}",
                occurred_at=T0 + timedelta(minutes=40 * i),
                metadata={"i": i, "list": [1, None, "x"]} if i % 2 else {},
            )
        )
    cid = r.customer_id
    async with db.write() as s:
        s.add_all([CustomerTag(customer_id=cid, tag=t) for t in ("vip", "b2b", "ä-tag")])
        s.add_all(
            [
                Task(customer_id=cid, title="later", due_at=T0 + timedelta(days=2)),
                Task(customer_id=cid, title="undated"),
                Task(customer_id=cid, title="soon", due_at=T0 + timedelta(hours=1)),
                Task(customer_id=cid, title="done", due_at=T0, done=True),
            ]
        )
    queries: list[tuple[Any, dict[str, Any]]] = [
        (lookup._TAGS, {"cid": cid}),
        (lookup._OPEN_CONVERSATIONS, {"cid": cid}),
        (lookup._RECENT, {"cid": cid}),
        (lookup._OPEN_TASKS, {"cid": cid}),
    ]
    async with db.read() as s:
        conn = await s.connection()
        expected = [[tuple(row) for row in await conn.execute(q, p)] for q, p in queries]
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        statements.append(sql)

    event.listen(db.engine.sync_engine, "before_cursor_execute", seen)
    try:
        async with db.read() as s:
            got = await fetch_many(await s.connection(), queries)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", seen)
    assert [[tuple(row) for row in rows] for rows in got] == expected
    # SQLite: one trip to the worker thread, past Core; PostgreSQL: one statement.
    assert len(statements) == (0 if db.sqlite else 1)
    tags, conversations, recent, tasks = got
    assert [t.tag for t in tags] == ["b2b", "vip", "ä-tag"]
    assert len(conversations) == 1 and conversations[0].customer_id == cid
    assert [(i.text, i.occurred_at, i.meta) for i in recent] == [
        (
            f"m{i} ü",
            T0 + timedelta(minutes=40 * i),
            {"i": i, "list": [1, None, "x"]} if i % 2 else {},
        )
        for i in (6, 5, 4, 3, 2)
    ]
    assert [(t.title, t.due_at, t.done) for t in tasks] == [
        ("soon", T0 + timedelta(hours=1), False),
        ("later", T0 + timedelta(days=2), False),
        ("undated", None, False),
    ]


async def test_numeric_columns_read_as_core_reads_them(db: Database) -> None:
    """asyncpg's NUMERIC result processor needs the column's type code, which a row
    inside an array does not carry: such statements go through Core, same values."""
    numbers = select(cast(literal(1.25), Numeric(10, 2)).label("price"), literal(3).label("n"))
    count = select(func.count(task_t.c.id).label("tasks"))
    async with db.read() as s:
        conn = await s.connection()
        got = await fetch_many(conn, [(numbers, {}), (count, {})])
        expected = [list(await conn.execute(numbers)), list(await conn.execute(count))]
    assert [[tuple(r) for r in rows] for rows in got] == [
        [tuple(r) for r in rows] for rows in expected
    ]
    assert got[0][0].price == Decimal("1.25") and got[1][0].tasks == 0
