"""Segment selection at scale: count, preview and streaming the audience by keyset pages.

Seeds N customers (bench/seed.py: postal codes 01067 to 99998, 12 industries,
4 teams), tags every 10th "vip" and every 7th "churned", records a newsletter
opt-in for every 3rd, then times, for a campaign-like filter (postal code
range, two industries, not churned, opted in to the newsletter):

- `count`: the live count the API shows;
- `preview`: the first 20 customers with owner names;
- `first page`: the first 1,000 ids of `customer_ids_query` (what a campaign
  expansion reads before its first outbox row: the issue wants the first
  message < 2 s after start at 1 M);
- `stream`: every id, 1,000 per keyset page (`WHERE id > last`), with the
  process's peak RSS (the audience is never held in memory).

    .venv/bin/python bench/segments.py                        # 1 M customers, SQLite
    .venv/bin/python bench/segments.py --customers 100000
    .venv/bin/python bench/segments.py --db postgresql+asyncpg://postgres@127.0.0.1:5432/postgres

A benchmark, not a test: it asserts nothing about the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import sys
import time
from pathlib import Path

if not __package__:  # run as `python bench/segments.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.seed import log, seed
from bench.target import prepare_target
from hub.segments import count, customer_ids_query, parse_filter, preview, stream_ids
from hub.store.migrate import upgrade
from hub.store.models import utcnow
from hub.store.tables import consent_t, customer_t, tag_t

FILTER = {
    "postal_code": {"from": "10000", "to": "59999"},
    "industry": {"in": ["retail", "software"]},
    "tags": {"none": ["churned"]},
    "consent": {"channel": "email", "purpose": "newsletter", "state": "opted_in"},
}
PAGE = 1000


async def decorate(url: str, customers: int) -> None:
    """Tags and consent rows the filter reads (setup, not measured)."""
    engine = create_async_engine(url)
    now = utcnow()
    async with engine.begin() as conn:
        for lo in range(1, customers + 1, 100_000):
            hi = min(lo + 100_000, customers + 1)
            tags = [{"customer_id": i, "tag": "vip"} for i in range(lo, hi) if i % 10 == 0]
            tags += [{"customer_id": i, "tag": "churned"} for i in range(lo, hi) if i % 7 == 0]
            await conn.execute(insert(tag_t), tags)
            consent = [
                {
                    "customer_id": i,
                    "channel": "email",
                    "purpose": "newsletter",
                    "state": "opted_in",
                    "source": "bench",
                    "recorded_at": now,
                }
                for i in range(lo, hi)
                if i % 3 == 0
            ]
            await conn.execute(insert(consent_t), consent)
        # As autovacuum would by the time a campaign runs: statistics of the new rows.
        await conn.execute(text("ANALYZE"))
    await engine.dispose()


async def measure(url: str) -> dict[str, float]:
    engine = create_async_engine(url)
    flt = parse_filter(FILTER)
    out: dict[str, float] = {}
    async with engine.connect() as conn:
        t0 = time.perf_counter()
        out["count"] = await count(conn, flt, None)
        out["count_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        await preview(conn, flt, None, 20)
        out["preview_s"] = time.perf_counter() - t0
        query = customer_ids_query(flt, None)
        t0 = time.perf_counter()
        first = (await conn.execute(query.limit(PAGE))).scalars().all()
        out["first_page_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        seen = 0
        async for ids in stream_ids(conn, flt, None):
            if not seen:
                out["first_range_s"] = time.perf_counter() - t0
            seen += len(ids)
        out["ranges_s"] = time.perf_counter() - t0
        assert seen == out["count"], (seen, out["count"])
        t0 = time.perf_counter()
        seen, last = 0, 0
        while True:
            ids = (
                (await conn.execute(query.where(customer_t.c.id > last).limit(PAGE)))
                .scalars()
                .all()
            )
            if not ids:
                break
            seen += len(ids)
            last = ids[-1]
        out["stream_s"] = time.perf_counter() - t0
        out["streamed"] = seen
        assert not first or first[0] <= last
        # Sanity: the stream and the count agree.
        assert seen == out["count"], (seen, out["count"])
    await engine.dispose()
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--customers", type=int, default=1_000_000)
    p.add_argument("--db", help="SQLite URL of a new file, or a PostgreSQL server URL")
    p.add_argument("--keep", action="store_true", help="keep the database")
    p.add_argument("--seed", metavar="URL", help=argparse.SUPPRESS)  # the child's part
    args = p.parse_args(argv)
    if args.seed:
        seed(args.seed, args.customers, 0)
        asyncio.run(decorate(args.seed, args.customers))
        return 0
    target = prepare_target(args.db, args.keep)
    try:
        log(f"database: {target.where}")
        upgrade(target.url)
        t0 = time.perf_counter()
        # Seeded by a child process: this one's peak RSS is then the selection's alone
        # (a forked child would start with the seeder's resident pages).
        subprocess.run(
            [sys.executable, __file__, "--seed", target.url, "--customers", str(args.customers)],
            check=True,
        )
        log(f"seeded and tagged in {time.perf_counter() - t0:.1f} s")
        r = asyncio.run(measure(target.url))
        print(
            f"{args.customers:,} customers, "
            f"{int(r['count']):,} selected: "
            f"count {r['count_s'] * 1000:.0f} ms, preview(20) {r['preview_s'] * 1000:.0f} ms, "
            f"first {PAGE} ids {r['first_page_s'] * 1000:.0f} ms, "
            f"all ids by keyset {r['stream_s']:.1f} s; stream_ids: first ids "
            f"{r['first_range_s'] * 1000:.0f} ms, all {r['ranges_s']:.1f} s; "
            f"peak RSS {r['peak_rss_mb']:.0f} MB"
        )

    finally:
        target.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
