"""Event ids without writing the event: numbers from the database, taken before the row.

The stream sends an event to its clients as soon as it has the event's id
and stores the row afterwards (hub/events/stream.py), so the write, which on
SQLite waits for the ingest writer's lock, is no longer between a webhook's
commit and the pop. The ids still come from the database, so they stay
unique and ordered however many processes publish:

- PostgreSQL: `nextval` of event_log's own sequence, one round trip per batch
  (no transaction, no lock, nothing to fsync). Every node draws from the one
  sequence, so ids follow the order in which the nodes numbered their events.
- SQLite: a block of ids reserved in `sqlite_sequence` (event_log is
  AUTOINCREMENT), one short write per `SQLITE_BLOCK` events. An AUTOINCREMENT
  insert by another process (a CLI command's events) takes an id above the
  block, never one in it, and a restart starts a new block above every id
  given before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy import text

from hub.store.db import Database

SQLITE_BLOCK = 10_000

_SQLITE_SEED = text(
    "INSERT INTO sqlite_sequence (name, seq) "
    "SELECT 'event_log', COALESCE((SELECT max(id) FROM event_log), 0) "
    "WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'event_log')"
)
_SQLITE_RESERVE = text(
    "UPDATE sqlite_sequence SET seq = max(seq, COALESCE((SELECT max(id) FROM event_log), 0))"
    " + :n WHERE name = 'event_log' RETURNING seq"
)
_PG_NEXT = text(
    "SELECT nextval(pg_get_serial_sequence('event_log', 'id')) FROM generate_series(1, :n)"
)


class EventIds:
    def __init__(self, db: Database) -> None:
        self.db = db
        # PostgreSQL: the stream's listening connection, when it has one (a round trip
        # there is cheaper than a pooled session's begin, query and commit).
        self.pg_source: Callable[[int], Awaitable[list[int]]] | None = None
        self._next = 0
        self._end = 0  # the block is [_next, _end)

    async def take(self, n: int) -> list[int]:
        """`n` new ids, ascending. Raises what the database raises when it is away."""
        if n <= 0:
            return []
        if not self.db.sqlite:
            if self.pg_source is not None:
                try:
                    return await self.pg_source(n)
                except Exception:  # reconnecting: the pool still has the sequence
                    pass
            async with self.db.read() as s:
                conn = await s.connection()
                ids = sorted(int(i) for i in (await conn.execute(_PG_NEXT, {"n": n})).scalars())
                await s.commit()
            return ids
        if self._end - self._next < n:
            size = max(n, SQLITE_BLOCK)
            async with self.db.write() as s:
                conn = await s.connection()
                await conn.execute(_SQLITE_SEED)
                last = int((await conn.execute(_SQLITE_RESERVE, {"n": size})).scalar_one())
            self._next, self._end = last - size + 1, last + 1
        ids = list(range(self._next, self._next + n))
        self._next += n
        return ids
