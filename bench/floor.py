"""The floor the ingest pipeline is measured against, in the same process run.

The machine's speed varies by 2x from day to day, so an absolute rate says
little; a ratio to the simplest thing that does the same durable work on the
same database does. The floor is SQLAlchemy Core on the plain driver
(aiosqlite / asyncpg): the same callers each await one contact at a time; one
writer takes up to `batch_max` (<= 500) waiting contacts, looks their senders
up by identity in one statement, appends one interaction each (executemany,
ON CONFLICT DO NOTHING on the provider id) and commits once, then wakes the
callers. No conversations, leads, teams or audit: what is left is the
irreducible lookup + append + durable commit.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime
from email.utils import parseaddr
from typing import Any

from sqlalchemy import MetaData, Table, bindparam, event, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import create_async_engine

from bench.stats import pct
from channels.base import Channel, InboundContact
from hub.store.columns import UTCDateTime
from hub.store.db import is_sqlite
from hub.store.tables import identity_t, interaction_t

_NON_DIGIT = re.compile(r"[^\d+]")


class _StockUTCDateTime(UTCDateTime):
    """UTCDateTime with SQLAlchemy's own bind processing (TypeDecorator, then the
    dialect's), as the hub's was when the floor was set: the floor is a yardstick,
    and must not get faster when the hub's column types do (the same text is stored)."""

    cache_ok = True

    def bind_processor(self, dialect: Any) -> Any:
        return super(UTCDateTime, self).bind_processor(dialect)


def _floor_table() -> Table:
    """interaction_t, its times bound the stock way."""
    table = interaction_t.to_metadata(MetaData())
    for column in table.c:
        if isinstance(column.type, UTCDateTime):
            column.type = _StockUTCDateTime()
    return table


def _floor_key(contact: InboundContact) -> tuple[str, str]:
    """A cheap normaliser (German numbers, lower-case addresses): the floor's own."""
    if contact.channel == Channel.SMS:
        d = _NON_DIGIT.sub("", contact.sender.replace("(0)", ""))
        if d.startswith("00"):
            d = "+" + d[2:]
        elif d.startswith("0"):
            d = "+49" + d[1:]
        return "phone", d
    return "email", parseaddr(contact.sender)[1].lower()


async def run_floor(
    url: str, contacts: list[InboundContact], concurrency: int, batch_max: int = 500
) -> dict[str, Any]:
    batch_max = min(batch_max, 500)
    engine = create_async_engine(url, pool_size=2)
    if is_sqlite(url):

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()

        insert = sqlite_insert
    else:
        insert = pg_insert  # type: ignore[assignment]
    # kind IN (both) AND value IN (...): the unique (kind, value) index answers it;
    # on value alone the database would scan every identity per batch.
    lookup = select(identity_t.c.value, identity_t.c.customer_id).where(
        identity_t.c.kind.in_(["email", "phone"]),
        identity_t.c.value.in_(bindparam("values", expanding=True)),
    )
    floor_t = _floor_table()
    append = insert(floor_t).on_conflict_do_nothing(index_elements=["channel", "provider_id"])
    queue: asyncio.Queue[tuple[InboundContact, asyncio.Future[None]]] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    batches = 0

    async def writer() -> None:
        nonlocal batches
        while True:
            first = await queue.get()
            items = [first]
            while len(items) < batch_max and not queue.empty():
                items.append(queue.get_nowait())
            keys = [_floor_key(c) for c, _ in items]
            now = datetime.now(UTC)
            async with engine.begin() as conn:
                found = dict(
                    (await conn.execute(lookup, {"values": list({v for _, v in keys})})).all()
                )
                rows = [
                    {
                        "customer_id": found.get(v, 1),
                        "channel": "floor-" + c.channel.value,
                        "direction": "in",
                        "occurred_at": c.occurred_at or now,
                        "subject": c.subject,
                        "text": c.text,
                        "provider_id": c.provider_id,
                        "sender": c.sender,
                        "recipient": c.recipient,
                        "meta": {},
                        "created_at": now,
                    }
                    for (c, _), (_, v) in zip(items, keys, strict=True)
                ]
                await conn.execute(append, rows)
            batches += 1
            for _, fut in items:
                if not fut.done():
                    fut.set_result(None)

    latencies: list[float] = []
    source = iter(contacts)
    clock = time.perf_counter

    async def caller() -> None:
        for contact in source:
            t0 = clock()
            fut: asyncio.Future[None] = loop.create_future()
            queue.put_nowait((contact, fut))
            await fut
            latencies.append(clock() - t0)

    task = asyncio.create_task(writer())
    try:
        t0 = clock()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        seconds = clock() - t0
    finally:
        task.cancel()
        await engine.dispose()
    latencies.sort()
    return {
        "contacts": len(contacts),
        "seconds": round(seconds, 3),
        "per_second": round(len(contacts) / seconds, 1),
        "p50_ms": round(pct(latencies, 50) * 1000, 2),
        "p99_ms": round(pct(latencies, 99) * 1000, 2),
        "batches": batches,
    }
