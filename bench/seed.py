"""Seeding for the benchmarks: many customers, written straight into a fresh database.

Seeding bypasses the pipeline on purpose (stdlib sqlite3 executemany /
asyncpg COPY, ANALYZE at the end): it prepares the stage, it is not what is
measured. Customer i has the identities `customer_email(i)` and
`customer_phone(i)`, which the workload and the lookups use to find it again.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import make_url

from hub.store.db import is_sqlite
from hub.store.models import Conversation, Customer, Identity, Interaction, Team, User

TEAMS = ["Support", "Sales", "Key Accounts", "Billing"]  # ids 1..4, in this order
AGENTS = 20  # app_user ids 1..20; every third customer has one as owner
INDUSTRIES = [
    "retail", "logistics", "construction", "healthcare", "software", "banking",
    "insurance", "energy", "automotive", "hospitality", "education", "media",
]  # fmt: skip
CITIES = ["Berlin", "Hamburg", "München", "Köln", "Frankfurt", "Leipzig", "Dresden", "Bremen"]
SEED_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
CHUNK = 50_000  # rows per executemany / COPY call while seeding


def customer_email(i: int) -> str:
    return f"c{i}@example{i % 97}.com"


def customer_phone(i: int) -> str:
    """E.164 German mobile numbers, unique per customer id (< 100 M)."""
    return f"+49151{i:08d}"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _sqlite_ts(at: datetime) -> str:
    # The text form SQLAlchemy's SQLite DATETIME writes (UTC, no zone), so that
    # seeded rows compare and sort like rows the pipeline writes.
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


@dataclass
class SeedRows:
    """Row generators per table, in the column order of `columns(table)`."""

    customers: int
    history_every: int  # every n-th customer has an old conversation (0: none)
    ts: Callable[[datetime], Any]
    as_json: Callable[[dict[str, Any]], Any]
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def teams(self) -> Iterator[tuple[Any, ...]]:
        for i, name in enumerate(TEAMS, 1):
            yield (i, name, self.ts(self.now))

    def users(self) -> Iterator[tuple[Any, ...]]:
        for i in range(1, AGENTS + 1):
            yield (
                i,
                f"agent{i}",
                f"Agent {i}",
                "agent",
                f"{100 + i}",
                None,  # pbx_id
                None,  # phone
                None,
                True,
                self.ts(self.now),
            )

    def customers_rows(self, lo: int, hi: int) -> Iterator[tuple[Any, ...]]:
        rng = random.Random(lo)
        empty = self.as_json({})
        for i in range(lo, hi):
            at = self.ts(SEED_EPOCH + timedelta(seconds=i))
            yield (
                i, "customer", f"Customer {i}", f"Firma {i % 20_000} GmbH",
                INDUSTRIES[i % len(INDUSTRIES)], f"{rng.randint(1067, 99998):05d}",
                CITIES[i % len(CITIES)], "DE", "", empty,
                (i % AGENTS) + 1 if i % 3 == 0 else None, (i % len(TEAMS)) + 1, None,
                at, at, None, None,
            )  # fmt: skip

    def identities_rows(self, lo: int, hi: int) -> Iterator[tuple[Any, ...]]:
        at = self.ts(SEED_EPOCH)
        for i in range(lo, hi):
            email, phone = customer_email(i), customer_phone(i)
            # undeliverable_at, undeliverable_reason, soft_bounces: never bounced
            yield (2 * i - 1, i, "email", email, email, True, True, None, None, 0, at)
            yield (2 * i, i, "phone", phone, phone, False, True, None, None, 0, at)

    def history(self, lo: int, hi: int) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """An old conversation of 4 interactions for every n-th customer in [lo, hi)."""
        convs: list[tuple[Any, ...]] = []
        inters: list[tuple[Any, ...]] = []
        if not self.history_every:
            return convs, inters
        empty = self.as_json({})
        for cid in range(lo, hi):
            if cid % self.history_every:
                continue
            n = cid // self.history_every  # conversation id
            email = n % 2 == 0
            channel = "email" if email else "sms"
            base = SEED_EPOCH + timedelta(minutes=n)
            last = base + timedelta(days=3)
            status = "closed" if n % 3 == 0 else "open"
            convs.append((n, cid, channel, "Order question", status, None, (cid % len(TEAMS)) + 1,
                          self.ts(base), self.ts(last)))  # fmt: skip
            for k in range(4):
                at = self.ts(base + timedelta(days=k))
                inbound = k % 2 == 0
                pid = f"<seed-{n}-{k}@example.com>" if email else f"SMseed{n}x{k}"
                sender = customer_email(cid) if email else customer_phone(cid)
                inters.append((
                    4 * n + k, cid, n, channel, "in" if inbound else "out", at,
                    "Order question", "Where is my order? " * 5, pid,
                    sender if inbound else "support@example.com",
                    "support@example.com" if inbound else sender,
                    None if inbound else "delivered", empty, None, at,
                ))  # fmt: skip
        return convs, inters


def columns(table: Table) -> list[str]:
    return [c.name for c in table.columns]


def _tables() -> dict[str, Table]:
    return {
        name: model.__table__  # type: ignore[attr-defined]
        for name, model in [
            ("team", Team),
            ("app_user", User),
            ("customer", Customer),
            ("identity", Identity),
            ("conversation", Conversation),
            ("interaction", Interaction),
        ]
    }


def _chunks(total: int) -> Iterator[tuple[int, int]]:
    for lo in range(1, total + 1, CHUNK):
        yield lo, min(lo + CHUNK, total + 1)


def _progress(done: int, total: int, since: float) -> None:
    log(f"  seeded {done:,}/{total:,} customers ({time.perf_counter() - since:.1f} s)")


def seed_sqlite(path: str, rows: SeedRows) -> None:
    """Stdlib sqlite3, big transactions; synchronous=OFF only for this seeding connection."""
    tables = _tables()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-1000000")  # 1 GB: keep index pages in memory

    def insert(name: str, data: Sequence[tuple[Any, ...]] | Iterator[tuple[Any, ...]]) -> None:
        cols = ", ".join(f'"{c}"' for c in columns(tables[name]))  # "primary" is a keyword
        marks = ", ".join("?" * len(tables[name].columns))
        sql = f"INSERT INTO {name} ({cols}) VALUES ({marks})"
        conn.executemany(sql, data)

    t0 = time.perf_counter()
    conn.execute("BEGIN")
    insert("team", rows.teams())
    insert("app_user", rows.users())
    for n, (lo, hi) in enumerate(_chunks(rows.customers), 1):
        insert("customer", rows.customers_rows(lo, hi))
        insert("identity", rows.identities_rows(lo, hi))
        convs, inters = rows.history(lo, hi)
        insert("conversation", convs)
        insert("interaction", inters)
        if n % 4 == 0:
            conn.execute("COMMIT")
            conn.execute("BEGIN")
            _progress(hi - 1, rows.customers, t0)
    conn.execute("COMMIT")
    log(f"  analyze + checkpoint ({time.perf_counter() - t0:.1f} s)")
    conn.execute("PRAGMA analysis_limit=1000")
    conn.execute("ANALYZE")
    # Durable before measuring: otherwise the first fsync of the measured run
    # (a checkpoint's) would flush the whole seeded file.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def seed_postgres(url: str, rows: SeedRows) -> None:
    """asyncpg COPY; then move the id sequences past the explicit ids, VACUUM ANALYZE and
    CHECKPOINT, so the measured steps run in a steady state: left alone, autovacuum
    (which PostgreSQL 13+ starts after many inserts) and the next checkpoint (writing out
    the whole load) would run during the first step and be measured as its latency."""
    import asyncpg  # type: ignore[import-untyped]

    tables = _tables()
    conn = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))
    t0 = time.perf_counter()
    try:

        async def copy(
            name: str, data: Sequence[tuple[Any, ...]] | Iterator[tuple[Any, ...]]
        ) -> None:
            await conn.copy_records_to_table(
                name, records=list(data), columns=columns(tables[name])
            )

        await copy("team", rows.teams())
        await copy("app_user", rows.users())
        for n, (lo, hi) in enumerate(_chunks(rows.customers), 1):
            await copy("customer", rows.customers_rows(lo, hi))
            await copy("identity", rows.identities_rows(lo, hi))
            convs, inters = rows.history(lo, hi)
            await copy("conversation", convs)
            await copy("interaction", inters)
            if n % 4 == 0:
                _progress(hi - 1, rows.customers, t0)
        for name in tables:
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                f"(SELECT coalesce(max(id), 0) + 1 FROM {name}), false)"
            )
        log(f"  vacuum analyze + checkpoint ({time.perf_counter() - t0:.1f} s)")
        await conn.execute("VACUUM ANALYZE")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


def seed(url: str, customers: int, history_every: int) -> None:
    """Fill the migrated, empty database at `url` (SQLite file or PostgreSQL database)."""
    sqlite = is_sqlite(url)
    rows = SeedRows(
        customers,
        history_every,
        ts=_sqlite_ts if sqlite else (lambda at: at),
        as_json=json.dumps,  # both take JSON as text (asyncpg's default json codec)
    )
    if sqlite:
        seed_sqlite(make_url(url).database or "", rows)
    else:
        asyncio.run(seed_postgres(url, rows))
