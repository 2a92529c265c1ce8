"""event_log keeps the newest `keep` events and none older than `keep_hours`
(EventStream._prune, run every 1,000 stored events)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import insert, select

from hub.events.bus import Event, EventBus
from hub.events.stream import Client, EventStream
from hub.records.auth import Principal
from hub.store.db import Database
from hub.store.models import Role, utcnow
from hub.store.tables import event_log_t

ADMIN = Principal(1, "admin", Role.ADMIN, frozenset())


async def _send_1000(db: Database, keep: int) -> list[int]:
    """1,000 events through a stream keeping `keep` (and 24 hours); their ids."""
    bus = EventBus(queue_size=2000)
    stream = EventStream(db, bus, keep=keep, keep_hours=24)
    client = Client(ADMIN, 2000)
    stream.clients.add(client)
    await stream.start()
    try:
        for n in range(1000):
            bus.publish(Event("t.n", {"n": n}))
        sent = [await asyncio.wait_for(client.queue.get(), 15) for _ in range(1000)]
        await stream.flush()  # the 1,000th stored event prunes
    finally:
        await stream.stop()
    return [f.id or 0 for f in sent]


async def _kept(db: Database) -> list[tuple[int, str]]:
    async with db.read() as s:
        rows = await (await s.connection()).execute(
            select(event_log_t.c.id, event_log_t.c.kind).order_by(event_log_t.c.id)
        )
        return [(r.id, r.kind) for r in rows]


async def test_the_log_drops_the_old_then_keeps_the_newest(db: Database) -> None:
    async with db.write() as s:  # a day-old event
        await (await s.connection()).execute(
            insert(event_log_t).values(
                at=utcnow() - timedelta(hours=25), kind="t.old", data={}, team_id=None, users=None
            )
        )
    first = await _send_1000(db, keep=100_000)
    # Only the day-old one went: by age, not by count.
    assert await _kept(db) == [(i, "t.n") for i in first]
    second = await _send_1000(db, keep=100)
    newest = max(second)
    assert [i for i, _ in await _kept(db)] == list(range(newest - 99, newest + 1))
