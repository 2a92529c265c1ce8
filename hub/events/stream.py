"""The event stream behind /api/v1/events: every event numbered, kept, and sent to
exactly the users who may see it.

The bus (bus.py) carries events inside a node. The stream takes them from
the bus, stores them in `event_log` (one insert per batch; the database's
sequence gives each its id, ordered across nodes) and hands each to the
connected clients allowed to see it:

- `Event.users` set (a screen pop): only those users;
- else members of `Event.team_id`, and admins;
- `bus.overflow` goes to every client it concerns (it names no data).

A client that reconnects gives the last id it saw and gets the kept events
after it (filtered the same way), then live ones: `Client` is registered
before the replay is read, so nothing falls between the two, and ids it
already sent are skipped.

With PostgreSQL, each node NOTIFYs the ids it stored on the channel
`crmhub_events` and LISTENs for the others' (events.pg_fanout), so a pop
published on node A reaches an agent connected to node B. SQLite is one
node; the in-process path is all there is.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, insert, select

from hub.events.bus import OVERFLOW_KIND, Event, EventBus
from hub.records.auth import Principal
from hub.store.db import Database
from hub.store.models import utcnow
from hub.store.tables import event_log_t

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Frame:
    id: int | None
    kind: str
    data: dict[str, Any]
    team_id: int | None
    users: frozenset[int] | None

    def json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "data": self.data}

    @functools.cached_property
    def text(self) -> str:
        """Encoded once, however many clients it goes to (a team event reaches dozens)."""
        return json.dumps(self.json())


def may_see(principal: Principal, frame: Frame) -> bool:
    if frame.kind == OVERFLOW_KIND:
        return True
    if frame.users is not None:
        return principal.user_id in frame.users
    return principal.is_admin or (frame.team_id is not None and frame.team_id in principal.team_ids)


class Client:
    """One connection's queue; bounded, oldest dropped first, like the bus."""

    def __init__(self, principal: Principal, size: int) -> None:
        self.principal = principal
        self.queue: asyncio.Queue[Frame] = asyncio.Queue(size)
        self.dropped = 0

    def offer(self, frame: Frame) -> None:
        if not may_see(self.principal, frame):
            return
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(frame)


def _frame(row: Any) -> Frame:
    users = frozenset(row.users) if row.users is not None else None
    return Frame(row.id, row.kind, row.data, row.team_id, users)


class EventStream:
    def __init__(self, db: Database, bus: EventBus, *, keep: int, keep_hours: float) -> None:
        self.db = db
        self.bus = bus
        self.keep = keep
        self.keep_hours = keep_hours
        self.clients: set[Client] = set()
        self._task: asyncio.Task[None] | None = None
        self._listener: Any = None
        self.stored = 0

    async def start(self) -> None:
        if self._task is None:
            ready = asyncio.Event()
            self._task = asyncio.create_task(self._run(ready), name="event-stream")
            await ready.wait()  # subscribed: nothing published after start() is missed
        if not self.db.sqlite and self._listener is None:
            await self._listen()

    async def stop(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
            self._listener = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self, ready: asyncio.Event) -> None:
        async with self.bus.subscribe() as sub:
            ready.set()
            while True:
                batch = [await sub.get()]
                while not sub.empty() and len(batch) < 500:
                    batch.append(sub.get_nowait())
                try:
                    frames = await self._store(batch)
                except Exception:
                    # Not kept (the database is away): still sent live, without an id.
                    log.warning("events not stored; sent live only", exc_info=True)
                    frames = [Frame(None, e.kind, e.data, e.team_id, e.users) for e in batch]
                self.deliver(frames)
                if self.stored % 1000 < len(batch):
                    await self._prune()
                await self._notify(frames)

    async def _store(self, events: list[Event]) -> list[Frame]:
        """Keep a batch in event_log in one statement: its ids, in the batch's order."""
        kept = [e for e in events if e.kind != OVERFLOW_KIND]  # this node's bus only
        now = utcnow()
        ids: list[int] = []
        if kept:
            rows = [
                {
                    "at": now,
                    "kind": str(e.kind),
                    "data": e.data,
                    "team_id": e.team_id,
                    "users": sorted(e.users) if e.users is not None else None,
                }
                for e in kept
            ]
            async with self.db.write() as s:
                conn = await s.connection()
                result = await conn.execute(
                    insert(event_log_t).returning(event_log_t.c.id, sort_by_parameter_order=True),
                    rows,
                )
                ids = [int(i) for i in result.scalars()]
        numbered = iter(ids)
        frames = [
            Frame(
                None if e.kind == OVERFLOW_KIND else next(numbered),
                str(e.kind),
                e.data,
                None if e.kind == OVERFLOW_KIND else e.team_id,
                None if e.kind == OVERFLOW_KIND else e.users,
            )
            for e in events
        ]
        self.stored += len(events)
        return frames

    def deliver(self, frames: Iterable[Frame]) -> None:
        for frame in frames:
            for client in self.clients:
                client.offer(frame)

    async def replay(self, principal: Principal, after: int, limit: int = 5000) -> list[Frame]:
        async with self.db.read() as s:
            conn = await s.connection()
            rows = await conn.execute(
                select(event_log_t)
                .where(event_log_t.c.id > after)
                .order_by(event_log_t.c.id)
                .limit(limit)
            )
            return [f for f in map(_frame, rows) if may_see(principal, f)]

    async def _prune(self) -> None:
        try:
            async with self.db.write() as s:
                conn = await s.connection()
                newest = (
                    await conn.execute(select(event_log_t.c.id).order_by(event_log_t.c.id.desc()))
                ).scalar()
                if newest is None:
                    return
                cutoff = utcnow() - timedelta(hours=self.keep_hours)
                await conn.execute(
                    delete(event_log_t).where(
                        (event_log_t.c.id <= newest - self.keep) | (event_log_t.c.at < cutoff)
                    )
                )
        except Exception:
            log.warning("event log not pruned", exc_info=True)

    # -- PostgreSQL: several nodes -------------------------------------------
    async def _listen(self) -> None:
        from hub.events.pg_fanout import Listener

        self._listener = Listener(self.db.url, self._from_other_node)
        await self._listener.start()

    async def _notify(self, frames: list[Frame]) -> None:
        if self._listener is not None:
            await self._listener.notify([f.id for f in frames if f.id is not None])

    async def _from_other_node(self, ids: list[int]) -> None:
        async with self.db.read() as s:
            conn = await s.connection()
            rows = await conn.execute(
                select(event_log_t).where(event_log_t.c.id.in_(ids)).order_by(event_log_t.c.id)
            )
            self.deliver(map(_frame, rows))
