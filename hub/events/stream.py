"""The event stream behind /api/v1/events: every event numbered, kept, and sent to
exactly the users who may see it.

The bus (bus.py) carries events inside a node. The stream takes them from
the bus, numbers them (ids from the database without writing the event,
events/ids.py: ordered across nodes and processes), hands each at once to
the connected clients allowed to see it, and stores the batch in `event_log`
afterwards, off the pop's path (on SQLite that write waits for the ingest
writer's lock; before, every pop waited with it):

- `Event.users` set (a screen pop): only those users;
- else members of `Event.team_id`, and admins;
- `bus.overflow` goes to every client it concerns (it names no data).

A client that reconnects gives the last id it saw and gets the events after
it (filtered the same way), then live ones: `Client` is registered before
the replay is read, so nothing falls between the two, and ids it already
sent are skipped. The replay reads `event_log` and the node's `recent`
frames (those sent here and not yet stored, or stored by another node a
moment later), so an event sent a millisecond ago is replayed too.

With PostgreSQL, each node NOTIFYs the events it numbered, with their data,
on the channel `crmhub_events` and LISTENs for the others'
(events.pg_fanout), so a pop published on node A reaches an agent connected
to node B without a query. An event too big for a NOTIFY payload goes as
its id once it is stored, and the others read it from `event_log`. SQLite
is one node; the in-process path is all there is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.events.bus import OVERFLOW_KIND, Event, EventBus
from hub.events.clients import Client, Clients, Frame, may_see
from hub.events.ids import EventIds
from hub.events.log_rows import store_frames
from hub.records.auth import Principal
from hub.store.db import Database
from hub.store.models import utcnow
from hub.store.tables import event_log_t

log = logging.getLogger(__name__)

__all__ = ["Client", "Clients", "EventStream", "Frame", "may_see"]

# Frames a node remembers for replays that come before (or without) the stored row.
RECENT = 5000
# The storer waits this long after the first unstored frame, to write more in one go
# (replays meanwhile read `recent`).
STORE_EVERY = 0.05

# Runs a write in some transaction of the node's own writer (see EventStream.write_through).
WriteThrough = Callable[[Callable[[AsyncConnection], Awaitable[None]]], Awaitable[None]]


def _frame(row: Any) -> Frame:
    users = frozenset(row.users) if row.users is not None else None
    return Frame(row.id, row.kind, row.data, row.team_id, users)


class EventStream:
    def __init__(
        self,
        db: Database,
        bus: EventBus,
        *,
        keep: int,
        keep_hours: float,
        pop_region: str | None = None,
    ) -> None:
        """`pop_region`: render each batch's screen pops ahead (events/pops.py), reading
        national numbers in this region; None: each recipient's pop is built alone."""
        self.db = db
        self.pop_region = pop_region
        self.bus = bus
        self.keep = keep
        self.keep_hours = keep_hours
        self.clients = Clients()
        self.ids = EventIds(db)
        # Frames sent on this node (its own and other nodes'), oldest first, for replays.
        self.recent: deque[Frame] = deque(maxlen=RECENT)
        self._unstored: list[Frame] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._storer: asyncio.Task[None] | None = None
        self._closing = False
        self._between_batches = asyncio.Event()
        self._between_batches.set()
        # Frames from other nodes, delivered in their order after their pops are rendered.
        self._arrived: asyncio.Queue[list[Frame]] = asyncio.Queue()
        self._arrivals: asyncio.Task[None] | None = None
        self._listener: Any = None
        self.stored = 0
        # SQLite has one writer at a time: a second transaction waits for the lock in
        # SQLite's busy handler (sleeps of 1, 2, 5, 10… ms), and the ingest writer
        # then waits for it in turn. The hub sets this to its ingest writer, so the
        # event rows queue there instead of contending (None: a transaction of its own).
        self.write_through: WriteThrough | None = None

    async def start(self) -> None:
        if not self.db.sqlite and self._listener is None:
            await self._listen()
        if self._storer is None:
            self._closing = False
            self._storer = asyncio.create_task(self._store_loop(), name="event-store")
        if self._task is None:
            ready = asyncio.Event()
            self._task = asyncio.create_task(self._run(ready), name="event-stream")
            await ready.wait()  # subscribed: nothing published after start() is missed

    async def stop(self) -> None:
        if self._arrivals is not None:
            self._arrivals.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._arrivals
            self._arrivals = None
        if self._task is not None:
            # Between batches only: a batch cancelled mid-read (its ids, its pops) would
            # leave the driver's thread finishing the read after the loop is gone.
            await self._between_batches.wait()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._storer is not None:
            # Not cancelled: a write cancelled mid-way would leave the driver's thread
            # finishing it after the loop is gone. It stores what is left and ends.
            self._closing = True
            self._wake.set()
            with contextlib.suppress(Exception):
                await self._storer
            self._storer = None
        await self._flush()  # what was sent is kept, also when the node stops
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
            self._listener = None

    async def _run(self, ready: asyncio.Event) -> None:
        async with self.bus.subscribe() as sub:
            ready.set()
            while True:
                batch = [await sub.get()]
                while not sub.empty() and len(batch) < 500:
                    batch.append(sub.get_nowait())
                self._between_batches.clear()
                try:
                    await self._send(batch)
                finally:
                    self._between_batches.set()

    async def _send(self, batch: list[Event]) -> None:
        frames = await self._number(batch)
        await self._render(frames)
        self.deliver(frames)
        numbered = [f for f in frames if f.id is not None]
        self.recent.extend(numbered)
        if numbered:
            self._unstored.extend(numbered)
            self._wake.set()
        await self._notify(numbered)

    async def _number(self, events: list[Event]) -> list[Frame]:
        """Frames in the batch's order, ids ascending; `bus.overflow` gets none (this node's
        bus only), nor does anything while the database is away (sent live only)."""
        kept = sum(1 for e in events if e.kind != OVERFLOW_KIND)
        try:
            ids = await self.ids.take(kept)
        except Exception:
            log.warning("events not numbered (database away?); sent live only", exc_info=True)
            ids = []
        numbered = iter(ids)
        return [
            Frame(
                None if e.kind == OVERFLOW_KIND else next(numbered, None),
                str(e.kind),
                e.data,
                None if e.kind == OVERFLOW_KIND else e.team_id,
                None if e.kind == OVERFLOW_KIND else e.users,
                dict(e.cache),
            )
            for e in events
        ]

    async def _render(self, frames: list[Frame]) -> None:
        if self.pop_region is not None:
            from hub.events.pops import render_pops

            await render_pops(self.db, frames, self.pop_region)

    async def _store_loop(self) -> None:
        while not self._closing:
            await self._wake.wait()
            if not self._closing:
                await asyncio.sleep(STORE_EVERY)
            self._wake.clear()
            await self._flush()

    async def flush(self) -> None:
        """Store what was sent so far now, not ~STORE_EVERY later: an erasure scrubs
        event_log right after, and an event stored behind its back would keep the
        person's number in the file."""
        await self._between_batches.wait()  # a batch being numbered and sent goes first
        await self._flush()

    async def _flush(self) -> None:
        """Keep the unstored frames in event_log (one statement), then prune now and then."""
        frames, self._unstored = self._unstored, []
        if not frames:
            return

        async def write(conn: AsyncConnection) -> None:
            await store_frames(conn, frames, utcnow())

        try:
            await self._write(write)
        except Exception:
            # Sent already; replays on this node still have them from `recent`.
            log.warning("%d events sent but not stored", len(frames), exc_info=True)
            return
        self.stored += len(frames)
        if self._listener is not None:
            await self._listener.notify_stored([f.id for f in frames if f.id is not None])
        if self.stored % 1000 < len(frames):
            await self._prune()

    async def _write(self, write: Callable[[AsyncConnection], Awaitable[None]]) -> None:
        if self.write_through is not None and self.db.sqlite:
            try:
                await self.write_through(write)
                return
            except Exception:  # the writer stopped first (shutdown) or refused: alone, then
                log.debug("event log write through the ingest writer failed", exc_info=True)
        async with self.db.write() as s:
            await write(await s.connection())

    async def _prune(self) -> None:
        try:
            await self._write(self._prune_in)
        except Exception:
            log.warning("event log not pruned", exc_info=True)

    async def _prune_in(self, conn: AsyncConnection) -> None:
        newest = (
            await conn.execute(select(event_log_t.c.id).order_by(event_log_t.c.id.desc()).limit(1))
        ).scalar()  # LIMIT 1: without it the driver fetched every kept id (~6 ms a prune)
        if newest is None:
            return
        cutoff = utcnow() - timedelta(hours=self.keep_hours)
        await conn.execute(
            delete(event_log_t).where(
                (event_log_t.c.id <= newest - self.keep) | (event_log_t.c.at < cutoff)
            )
        )

    def deliver(self, frames: Iterable[Frame]) -> None:
        for frame in frames:
            self.clients.deliver(frame)

    async def replay(self, principal: Principal, after: int, limit: int = 5000) -> list[Frame]:
        async with self.db.read() as s:
            conn = await s.connection()
            rows = await conn.execute(
                select(event_log_t)
                .where(event_log_t.c.id > after)
                .order_by(event_log_t.c.id)
                .limit(limit)
            )
            stored = list(map(_frame, rows))
        seen = {f.id for f in stored}
        recent = [f for f in self.recent if f.id is not None and f.id > after and f.id not in seen]
        frames = sorted([*stored, *recent], key=lambda f: f.id or 0)[:limit]
        return [f for f in frames if may_see(principal, f)]

    # -- PostgreSQL: several nodes -------------------------------------------
    async def _listen(self) -> None:
        from hub.events.pg_fanout import Listener

        self._listener = Listener(self.db.url, self._from_other_node, self._inline_from_other_node)
        await self._listener.start()
        self.ids.pg_source = self._listener.next_ids

    async def _notify(self, frames: list[Frame]) -> None:
        if self._listener is not None and frames:
            await self._listener.notify([(f.id or 0, f.node_text()) for f in frames])

    def _inline_from_other_node(self, events: list[dict[str, Any]]) -> None:
        frames = []
        for e in events:
            users = e.get("users")
            frames.append(
                Frame(
                    int(e["id"]),
                    str(e["kind"]),
                    dict(e["data"]),
                    e.get("team_id"),
                    frozenset(int(u) for u in users) if users is not None else None,
                )
            )
        self._arrive(frames)

    def _arrive(self, frames: list[Frame]) -> None:
        self.recent.extend(frames)
        self._arrived.put_nowait(frames)
        if self._arrivals is None or self._arrivals.done():
            self._arrivals = asyncio.create_task(self._deliver_arrived(), name="event-arrivals")

    async def _deliver_arrived(self) -> None:
        while not self._arrived.empty():
            frames = self._arrived.get_nowait()
            await self._render(frames)
            self.deliver(frames)

    async def _from_other_node(self, ids: list[int]) -> None:
        async with self.db.read() as s:
            conn = await s.connection()
            rows = await conn.execute(
                select(event_log_t).where(event_log_t.c.id.in_(ids)).order_by(event_log_t.c.id)
            )
            frames = list(map(_frame, rows))
        self._arrive(frames)
