"""Ingest and screen-pop benchmark at realistic scale.

Seeds a fresh database with many customers (one email and one phone identity
each, teams, postal codes, industries and some history), then pushes synthetic
inbound contacts through the real pipeline (`Hub.ingestor.ingest`, group
commit, durable commits) from many concurrent callers, and finally times the
screen-pop lookup exactly as GET /api/v1/lookup makes it (`caller_card`
on a raw phone number or address, then the customer's identities and tags),
minus HTTP and JSON. It is a benchmark, not a test: it prints
figures and asserts nothing about them, so a slow CI machine never fails a
build. Goals (2-core machine): >= 10,000 ingests/s on SQLite, lookup p99 < 2 ms
at 1 M customers.

    .venv/bin/python bench/ingest.py                      # 1 M customers, SQLite
    .venv/bin/python bench/ingest.py --customers 100000 --contacts 20000
    .venv/bin/python bench/ingest.py --db postgresql+asyncpg://postgres@127.0.0.1:5432/postgres

A PostgreSQL URL names the *server*: the benchmark creates a fresh database
there and drops it afterwards (unless --keep). Seeding bypasses the pipeline
on purpose (stdlib sqlite3 / asyncpg COPY): it prepares the stage, it is not
what is measured. Seeding lives in bench/seed.py, the synthetic contacts and
lookup targets in bench/workload.py; this file measures and reports.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

if not __package__:  # run as `python bench/ingest.py`: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.floor import run_floor
from bench.seed import log, seed
from bench.stats import pct
from bench.target import prepare_target
from bench.workload import SALES_LINE, Workload, lookup_targets, make_workload
from channels.base import InboundContact
from hub.config import load_settings
from hub.records.auth import Principal
from hub.records.lookup import caller_card
from hub.runtime import Hub
from hub.store.db import Database, is_sqlite
from hub.store.migrate import upgrade
from hub.store.models import Role

# Who the timed lookups run as: an agent of two of the four seeded teams, as
# GET /api/v1/lookup sees it; half the customers are then another team's (an
# "other_team" card after the claim check). `--as-admin` for the old figure.
BENCH_PRINCIPAL = Principal(
    user_id=1, username="agent1", role=Role.AGENT, team_ids=frozenset({1, 2})
)
ADMIN_PRINCIPAL = Principal(user_id=1, username="bench", role=Role.ADMIN, team_ids=frozenset())


# --- measurement --------------------------------------------------------------------------------


@dataclass
class IngestFigures:
    contacts: int
    concurrency: int
    seconds: float
    per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    batches: int
    mean_batch: float
    created_leads: int
    duplicates: int
    errors: int


async def run_ingest(hub: Hub, contacts: list[InboundContact], concurrency: int) -> IngestFigures:
    """`concurrency` callers, each awaiting one ingest at a time (as webhook handlers would)."""
    latencies: list[float] = []
    created = dups = errors = 0
    source = iter(contacts)
    ingest = hub.ingestor.ingest
    clock = time.perf_counter

    async def caller() -> None:
        nonlocal created, dups, errors
        for contact in source:  # shared iterator: each contact is taken once
            t0 = clock()
            try:
                result = await ingest(contact)
            except Exception:
                errors += 1
                continue
            latencies.append(clock() - t0)
            created += result.created_customer
            dups += result.duplicate

    batches0 = hub.ingestor.batches
    t0 = clock()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    seconds = clock() - t0
    batches = hub.ingestor.batches - batches0
    latencies.sort()
    return IngestFigures(
        contacts=len(contacts),
        concurrency=concurrency,
        seconds=round(seconds, 3),
        per_second=round(len(contacts) / seconds, 1),
        p50_ms=round(pct(latencies, 50) * 1000, 2),
        p99_ms=round(pct(latencies, 99) * 1000, 2),
        max_ms=round(latencies[-1] * 1000, 2) if latencies else float("nan"),
        batches=batches,
        mean_batch=round(len(contacts) / batches, 1) if batches else 0.0,
        created_leads=created,
        duplicates=dups,
        errors=errors,
    )


@dataclass
class LookupFigures:
    lookups: int
    found: int
    with_history: int
    p50_ms: float
    p99_ms: float
    max_ms: float


async def screen_pop(
    db: Database, region: str, kind: str, raw: str, principal: Principal = BENCH_PRINCIPAL
) -> list[Any] | None:
    """What GET /api/v1/lookup does (hub/web/api/customers.py `lookup`), minus HTTP and JSON:
    the caller card (hub/records/lookup.py) in one read; None for an unknown caller."""
    async with db.read() as s:
        card = await caller_card(
            await s.connection(),
            principal,
            region=region,
            phone=raw if kind == "phone" else None,
            email=raw if kind == "email" else None,
        )
    if card["status"] == "other_team":
        return []  # found, but another team's: no history shown
    if card["status"] != "known":
        return None
    recent: list[Any] = card["recent_interactions"]
    return recent


async def run_lookups(
    db: Database, region: str, targets: list[tuple[str, str]], principal: Principal
) -> LookupFigures:
    """One lookup at a time, each in its own read session, as a request would."""
    latencies: list[float] = []
    found = with_history = 0
    for kind, raw in targets:
        t0 = time.perf_counter()
        recent = await screen_pop(db, region, kind, raw, principal)
        latencies.append(time.perf_counter() - t0)
        if recent is not None:
            found += 1
            with_history += bool(recent)
    latencies.sort()
    return LookupFigures(
        lookups=len(targets),
        found=found,
        with_history=with_history,
        p50_ms=round(pct(latencies, 50) * 1000, 3),
        p99_ms=round(pct(latencies, 99) * 1000, 3),
        max_ms=round(latencies[-1] * 1000, 3),
    )


# --- database lifecycle -------------------------------------------------------------------------


# --- main ---------------------------------------------------------------------------------------


async def measure(url: str, args: argparse.Namespace, workload: Workload) -> dict[str, Any]:
    cfg = Path(tempfile.mkdtemp(prefix="crmhub-bench-cfg-")) / "empty.yaml"
    cfg.write_text("{}\n", encoding="utf-8")
    settings = load_settings(
        cfg,
        database={"url": url},
        teams={
            "default": "Support",
            "by_address": {"sales@example.com": "Sales", SALES_LINE: "Sales"},
        },
        ingest={"batch_max": args.batch_max},
    )
    shutil.rmtree(cfg.parent, ignore_errors=True)
    hub = Hub(settings)
    await hub.start()
    try:
        warm = make_workload(
            min(2000, args.contacts // 10 + 1), args.customers, args.history_every, seed=3
        )
        await run_ingest(hub, warm.contacts, args.concurrency)  # compile caches, warm pages
        log(f"ingesting {len(workload.contacts):,} contacts with {args.concurrency} callers")
        ingest = await run_ingest(hub, workload.contacts, args.concurrency)
        # The floor on the same database, same callers, same contacts (its rows
        # go to channels "floor-sms"/"floor-email", so nothing collides).
        log("ingesting the same contacts through the floor (Core + group commit)")
        await run_floor(url, warm.contacts, args.concurrency)
        floor = await run_floor(url, workload.contacts, args.concurrency)
        log(f"looking up {args.lookups:,} identities")
        await settle(url)
        targets = lookup_targets(args.lookups, args.customers, workload.known_customers)
        region = settings.identity.default_region
        who = ADMIN_PRINCIPAL if args.as_admin else BENCH_PRINCIPAL
        await run_lookups(hub.db, region, targets[: min(200, len(targets))], who)  # warm the pool
        lookup = await run_lookups(hub.db, region, targets, who)
    finally:
        await hub.stop()
    ingest_d = asdict(ingest)
    ingest_d["floor"] = floor
    ingest_d["ratio_to_floor"] = round(ingest.per_second / floor["per_second"], 3)
    return {"ingest": ingest_d, "lookup": asdict(lookup)}


async def settle(url: str) -> None:
    """Let the ingest phase's aftermath finish before the lookups are timed, as the seed
    does before the ingest: the kernel's write-back of the dirty pages, and on
    PostgreSQL a CHECKPOINT and the autovacuum workers that 100,000 new rows start
    (they ran next to the lookups on two cores and doubled their p99)."""
    await asyncio.to_thread(os.sync)
    if is_sqlite(url):
        return
    import asyncpg  # type: ignore[import-untyped]

    t0 = time.perf_counter()
    conn = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))
    try:
        await conn.execute("CHECKPOINT")
        while time.perf_counter() - t0 < 120:
            busy = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE backend_type = 'autovacuum worker' AND datname = current_database()"
            )
            if not busy:
                break
            await asyncio.sleep(0.5)
    finally:
        await conn.close()
    log(f"  checkpoint + autovacuum settled ({time.perf_counter() - t0:.1f} s)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--customers", type=int, default=1_000_000, help="customers to seed")
    p.add_argument("--contacts", type=int, default=100_000, help="contacts to ingest")
    p.add_argument("--concurrency", type=int, default=256, help="concurrent ingest callers")
    p.add_argument("--lookups", type=int, default=10_000, help="identity lookups to time")
    p.add_argument(
        "--db", help="sqlite+aiosqlite:///file (fresh) or a postgresql+asyncpg:// server URL"
    )
    p.add_argument("--as-admin", action="store_true", help="look up as admin, not as agent")
    p.add_argument("--keep", action="store_true", help="keep the database afterwards")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--batch-max", type=int, default=512, help="ingest.batch_max")
    p.add_argument(
        "--history-every", type=int, default=20,
        help="every n-th seeded customer gets an old 4-message conversation (0: none)",
    )  # fmt: skip
    args = p.parse_args(argv)
    if args.customers < 1 or args.contacts < 1 or args.concurrency < 1 or args.lookups < 1:
        p.error("counts must be positive")
    return args


def report(results: dict[str, Any]) -> str:
    s, i, lk = results["seed"], results["ingest"], results["lookup"]
    return "\n".join(
        [
            f"database      {results['backend']}  ({s['customers']:,} customers,"
            f" {s['identities']:,} identities, {s['history_interactions']:,} old interactions)",
            f"seed          {s['seconds']:.1f} s  (migrate {s['migrate_seconds']:.1f} s)",
            f"ingest        {i['contacts']:,} contacts, {i['concurrency']} callers:"
            f" {i['per_second']:,.0f} ingests/s in {i['seconds']:.2f} s",
            f"  latency     p50 {i['p50_ms']:.1f} ms   p99 {i['p99_ms']:.1f} ms"
            f"   max {i['max_ms']:.1f} ms",
            f"  floor       {i['floor']['per_second']:,.0f} /s  (p50 {i['floor']['p50_ms']:.1f} ms"
            f"  p99 {i['floor']['p99_ms']:.1f} ms, {i['floor']['batches']:,} commits)"
            f"  -> pipeline/floor = {i['ratio_to_floor']:.2f}x  (goal >= 0.7x)",
            f"  batches     {i['batches']:,}  (mean {i['mean_batch']:.1f} contacts per commit)",
            f"  outcome     {i['created_leads']:,} new leads, {i['duplicates']:,} duplicates"
            f" answered, {i['errors']:,} errors",
            f"lookup        {lk['lookups']:,} screen pops: p50 {lk['p50_ms']:.3f} ms"
            f"   p99 {lk['p99_ms']:.3f} ms   max {lk['max_ms']:.3f} ms"
            f"  ({lk['found']:,} found, {lk['with_history']:,} with history)",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    target = prepare_target(args.db, args.keep)
    sqlite = is_sqlite(target.url)
    try:
        log(f"database: {target.where}")
        t0 = time.perf_counter()
        upgrade(target.url)
        migrate_s = time.perf_counter() - t0
        log(f"seeding {args.customers:,} customers")
        t0 = time.perf_counter()
        seed(target.url, args.customers, args.history_every)
        seed_s = time.perf_counter() - t0
        log(f"seeded in {seed_s:.1f} s; building {args.contacts:,} contacts")
        workload = make_workload(args.contacts, args.customers, args.history_every)
        # The workload's ~million objects are not the system under test: keep
        # the garbage collector from walking them (100 ms pauses otherwise).
        gc.collect()
        gc.freeze()
        results = asyncio.run(measure(target.url, args, workload))
        history = args.customers // args.history_every if args.history_every else 0
        results = {
            "backend": "sqlite" if sqlite else "postgresql",
            "seed": {
                "customers": args.customers,
                "identities": 2 * args.customers,
                "history_interactions": 4 * history,
                "seconds": round(seed_s, 2),
                "migrate_seconds": round(migrate_s, 2),
            },
            **results,
        }
        print(json.dumps(results, indent=2) if args.json else report(results))
        if args.keep:
            log(f"kept: {target.where}")
        return 0
    finally:
        target.cleanup()


if __name__ == "__main__":
    sys.exit(main())
