"""Event ids are taken before the row is written (hub/events/ids.py): they stay unique and
ascending across a restart and next to another process's events, and what was sent is
kept for replays."""

from __future__ import annotations

import asyncio

from sqlalchemy import insert, select

from hub.events.bus import Event, EventBus
from hub.events.stream import Client, EventStream
from hub.records.auth import Principal
from hub.store.db import Database
from hub.store.models import Role, utcnow
from hub.store.tables import event_log_t

ADMIN = Principal(1, "admin", Role.ADMIN, frozenset())


async def _sent(stream: EventStream, bus: EventBus, kinds: list[str]) -> list[int]:
    client = Client(ADMIN, 100)
    stream.clients.add(client)
    for kind in kinds:
        bus.publish(Event(kind, {"k": kind}))
    frames = [await asyncio.wait_for(client.queue.get(), 10) for _ in kinds]
    stream.clients.discard(client)
    assert [f.kind for f in frames] == kinds
    return [f.id for f in frames if f.id is not None]


async def test_ids_ascend_across_a_restart_and_another_writer(db: Database) -> None:
    bus = EventBus()
    stream = EventStream(db, bus, keep=1000, keep_hours=1)
    await stream.start()
    first = await _sent(stream, bus, ["t.one", "t.two"])
    # Replayed at once, before the stored row exists (the node's recent frames)...
    assert [f.id for f in await stream.replay(ADMIN, 0)] == first
    # ...and another process (a CLI command's hub) stores an event meanwhile.
    async with db.write() as s:
        conn = await s.connection()
        other = (
            await conn.execute(
                insert(event_log_t)
                .values(at=utcnow(), kind="t.other", data={}, team_id=None, users=None)
                .returning(event_log_t.c.id)
            )
        ).scalar_one()
    second = await _sent(stream, bus, ["t.three"])
    await stream.stop()  # keeps what was sent
    assert len({*first, *second, other}) == 4 and first[0] < first[1] < second[0]

    restarted = EventStream(db, bus, keep=1000, keep_hours=1)
    await restarted.start()
    try:
        after = await _sent(restarted, bus, ["t.four"])
        assert after[0] > max(*first, *second, other)
        replayed = await restarted.replay(ADMIN, 0)
        assert [(f.id, f.kind) for f in replayed] == sorted(
            [
                (first[0], "t.one"),
                (first[1], "t.two"),
                (second[0], "t.three"),
                (other, "t.other"),
                (after[0], "t.four"),
            ]
        )
    finally:
        await restarted.stop()
    async with db.read() as s:
        conn = await s.connection()
        stored = (await conn.execute(select(event_log_t.c.kind).order_by(event_log_t.c.id))).all()
    assert sorted(k for (k,) in stored) == ["t.four", "t.one", "t.other", "t.three", "t.two"]
