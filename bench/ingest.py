"""Ingest and screen-pop benchmark at realistic scale.

Seeds a fresh database with many customers (one email and one phone identity
each, teams, postal codes, industries and some history), then pushes synthetic
inbound contacts through the real pipeline (`Hub.ingestor.ingest`, group
commit, durable commits) from many concurrent callers, and finally times the
identity lookup a screen pop makes. It is a benchmark, not a test: it prints
figures and asserts nothing about them, so a slow CI machine never fails a
build. Goals (2-core machine): >= 10,000 ingests/s on SQLite, lookup p99 < 2 ms
at 1 M customers.

    .venv/bin/python bench/ingest.py                      # 1 M customers, SQLite
    .venv/bin/python bench/ingest.py --customers 100000 --contacts 20000
    .venv/bin/python bench/ingest.py --db postgresql+asyncpg://postgres@127.0.0.1:5432/postgres

A PostgreSQL URL names the *server*: the benchmark creates a fresh database
there and drops it afterwards (unless --keep). Seeding bypasses the pipeline
on purpose (stdlib sqlite3 / asyncpg COPY): it prepares the stage, it is not
what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Table, bindparam, select, text
from sqlalchemy.engine import Row, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from channels.base import Channel, InboundContact
from hub.config import load_settings
from hub.db import Database, is_sqlite
from hub.migrate import upgrade
from hub.models import Conversation, Customer, Identity, Interaction, Team, User
from hub.runtime import Hub

TEAMS = ["Support", "Sales", "Key Accounts", "Billing"]  # ids 1..4, in this order
AGENTS = 20  # app_user ids 1..20; every third customer has one as owner
INDUSTRIES = [
    "retail", "logistics", "construction", "healthcare", "software", "banking",
    "insurance", "energy", "automotive", "hospitality", "education", "media",
]  # fmt: skip
CITIES = ["Berlin", "Hamburg", "München", "Köln", "Frankfurt", "Leipzig", "Dresden", "Bremen"]
SALES_LINE, SUPPORT_LINE = "+49 30 5550100", "+49 30 5550199"
SEED_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
CHUNK = 50_000  # rows per executemany / COPY call while seeding


def customer_email(i: int) -> str:
    return f"c{i}@example{i % 97}.com"


def customer_phone(i: int) -> str:
    """E.164 German mobile numbers, unique per customer id (< 100 M)."""
    return f"+49151{i:08d}"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- seeding ------------------------------------------------------------------------------------


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
            yield (2 * i - 1, i, "email", email, email, True, True, at)
            yield (2 * i, i, "phone", phone, phone, False, True, at)

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
    """asyncpg COPY; then move the id sequences past the explicit ids and ANALYZE."""
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
        log(f"  analyze ({time.perf_counter() - t0:.1f} s)")
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


# --- synthetic contacts -------------------------------------------------------------------------


def phone_forms(e164: str) -> list[str]:
    """How one German mobile number arrives: E.164, national, spaced, 0049 (0) ..."""
    national = "0" + e164[3:]
    return [
        e164,
        national,
        f"{national[:4]} {national[4:]}",
        f"+49 {e164[3:6]} {e164[6:]}",
        f"0049 (0){e164[3:6]}-{e164[6:]}",
    ]


def email_forms(address: str, i: int) -> list[str]:
    local, domain = address.split("@")
    return [address, address.upper(), f"Customer {i} <{local}@{domain.title()}>"]


@dataclass
class Workload:
    contacts: list[InboundContact]
    known_customers: list[int]  # customer ids that received contacts (lookup targets)
    resent: int


def make_workload(n: int, customers: int, history_every: int, seed: int = 7) -> Workload:
    """80 % known senders (various formats), 20 % unknown (new leads), ~5 % provider re-sends."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    run = uuid.uuid4().hex[:8]
    fresh: list[InboundContact] = []
    known: list[int] = []
    originals = max(1, round(n / 1.05))
    for k in range(originals):
        at = now + timedelta(microseconds=k)
        is_sms = rng.random() < 0.5
        if rng.random() < 0.8:
            cid = rng.randint(1, customers)
            known.append(cid)
            sender = (
                rng.choice(phone_forms(customer_phone(cid)))
                if is_sms
                else rng.choice(email_forms(customer_email(cid), cid))
            )
        else:
            cid = 0
            u = rng.randint(0, 10**8 - 1)
            sender = f"+49160{u:08d}" if is_sms else f"new{u}@newcomer{u % 13}.example"
        if is_sms:
            fresh.append(
                InboundContact(
                    Channel.SMS,
                    sender,
                    recipient=SALES_LINE if k % 4 == 0 else SUPPORT_LINE,
                    text=f"Hallo, bitte um Rückruf wegen Auftrag {k}.",
                    provider_id=f"SM{run}{k:010d}",
                    occurred_at=at,
                    metadata={"NumMedia": "0", "AccountSid": "ACbench"},
                )
            )
        else:
            # A reply to an old seeded thread where the customer has one (threading by refs).
            refs: tuple[str, ...] = ()
            if (
                cid
                and history_every
                and cid % history_every == 0
                and (cid // history_every) % 2 == 0
            ):
                refs = (f"<seed-{cid // history_every}-1@example.com>",)
            fresh.append(
                InboundContact(
                    Channel.EMAIL,
                    sender,
                    recipient="Sales <sales@example.com>" if k % 4 == 0 else "support@example.com",
                    subject=f"Re: Order {k}" if refs else f"Order {k}",
                    text="Sehr geehrte Damen und Herren,\n"
                    + "bitte senden Sie mir ein Angebot. " * 8,
                    provider_id=f"<{run}.{k}@mail.example>",
                    thread_refs=refs,
                    occurred_at=at,
                    metadata={"message_id": f"<{run}.{k}@mail.example>"},
                )
            )
    # Provider retries: the same contact again, a little later in the stream
    # (some land in the same batch as the original, most in a later one).
    out = list(fresh)
    resent = n - originals
    for _ in range(resent):
        src = rng.randrange(originals)
        pos = min(len(out), src + rng.randint(1, 3000))
        out.insert(pos, fresh[src])
    return Workload(out, known, resent)


# --- measurement --------------------------------------------------------------------------------


def pct(sorted_values: Sequence[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


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
class ScreenPop:
    customer: Row[Any]
    identities: list[Row[Any]]
    last_interactions: list[Row[Any]]


customer_t: Table = Customer.__table__  # type: ignore[attr-defined]
identity_t: Table = Identity.__table__  # type: ignore[attr-defined]
interaction_t: Table = Interaction.__table__  # type: ignore[attr-defined]


# Built once with bind parameters: constructing a select() costs more Python
# time (~0.1 ms) than SQLite needs to answer it.
_CUSTOMER_BY_IDENTITY = (
    select(customer_t)
    .join(identity_t, identity_t.c.customer_id == customer_t.c.id)
    .where(identity_t.c.kind == bindparam("kind"), identity_t.c.value == bindparam("value"))
)
_CUSTOMER_BY_ID = select(customer_t).where(customer_t.c.id == bindparam("cid"))
_IDENTITIES_OF = select(identity_t.c.kind, identity_t.c.value, identity_t.c.primary).where(
    identity_t.c.customer_id == bindparam("cid")
)
_LAST_INTERACTIONS = (
    select(
        interaction_t.c.id,
        interaction_t.c.channel,
        interaction_t.c.direction,
        interaction_t.c.occurred_at,
        interaction_t.c.subject,
        interaction_t.c.conversation_id,
    )
    .where(interaction_t.c.customer_id == bindparam("cid"))
    .order_by(interaction_t.c.occurred_at.desc(), interaction_t.c.id.desc())
    .limit(5)
)


async def bench_lookup_customer(conn: AsyncConnection, kind: str, value: str) -> ScreenPop | None:
    """The screen-pop query: customer by normalised identity, its identities, last 5 contacts.

    Stand-in until `hub.lookup.lookup_customer` exists; switch to it then. It
    uses the same indexes: identity(kind, value) unique, identity(customer_id),
    interaction(customer_id, occurred_at, id).
    """
    params = {"kind": kind, "value": value}
    customer = (await conn.execute(_CUSTOMER_BY_IDENTITY, params)).first()
    if customer is None:
        return None
    if customer.merged_into_id is not None:  # a merged record redirects to the survivor
        customer = (await conn.execute(_CUSTOMER_BY_ID, {"cid": customer.merged_into_id})).first()
        if customer is None:
            return None
    identities = (await conn.execute(_IDENTITIES_OF, {"cid": customer.id})).all()
    last = (await conn.execute(_LAST_INTERACTIONS, {"cid": customer.id})).all()
    return ScreenPop(customer, list(identities), list(last))


@dataclass
class LookupFigures:
    lookups: int
    found: int
    with_history: int
    p50_ms: float
    p99_ms: float
    max_ms: float


async def run_lookups(db: Database, targets: list[tuple[str, str]]) -> LookupFigures:
    """One lookup at a time, each on a connection checked out of the pool as a request would."""
    latencies: list[float] = []
    found = with_history = 0
    for kind, value in targets:
        t0 = time.perf_counter()
        async with db.engine.connect() as conn:
            pop = await bench_lookup_customer(conn, kind, value)
        latencies.append(time.perf_counter() - t0)
        if pop is not None:
            found += 1
            with_history += bool(pop.last_interactions)
    latencies.sort()
    return LookupFigures(
        lookups=len(targets),
        found=found,
        with_history=with_history,
        p50_ms=round(pct(latencies, 50) * 1000, 3),
        p99_ms=round(pct(latencies, 99) * 1000, 3),
        max_ms=round(latencies[-1] * 1000, 3),
    )


def lookup_targets(
    n: int, customers: int, known: list[int], seed: int = 11
) -> list[tuple[str, str]]:
    """Half callers who just wrote (fresh history), half anyone; phone and email alike."""
    rng = random.Random(seed)
    out: list[tuple[str, str]] = []
    for i in range(n):
        cid = rng.choice(known) if known and i % 2 == 0 else rng.randint(1, customers)
        out.append(
            ("phone", customer_phone(cid)) if rng.random() < 0.5 else ("email", customer_email(cid))
        )
    return out


# --- database lifecycle -------------------------------------------------------------------------


async def _admin(server_url: str, sql: str) -> None:
    engine = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(sql))
    await engine.dispose()


@dataclass
class Target:
    url: str
    cleanup: Callable[[], None]
    where: str


def prepare_target(db: str | None, keep: bool) -> Target:
    if db is None or is_sqlite(db):
        if db is None:
            tmp = Path(tempfile.mkdtemp(prefix="crmhub-bench-"))
            path = tmp / "bench.db"
            url = f"sqlite+aiosqlite:///{path}"

            def cleanup() -> None:
                if not keep:
                    shutil.rmtree(tmp, ignore_errors=True)

        else:
            url = db
            path = Path(make_url(db).database or "")
            if path.exists():
                raise SystemExit(f"bench: {path} exists; the benchmark needs a fresh database")

            def cleanup() -> None:
                if not keep:
                    for suffix in ("", "-wal", "-shm"):
                        Path(f"{path}{suffix}").unlink(missing_ok=True)

        return Target(url, cleanup, str(path))
    name = f"crmhub_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(db, f'CREATE DATABASE "{name}"'))
    url = make_url(db).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        if not keep:
            asyncio.run(_admin(db, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    return Target(url, drop, f"PostgreSQL database {name}")


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
        log(f"looking up {args.lookups:,} identities")
        # Let the ingest phase's dirty pages reach the disk first, so that the
        # kernel's write-back does not compete with the lookups being timed.
        await asyncio.to_thread(os.sync)
        targets = lookup_targets(args.lookups, args.customers, workload.known_customers)
        await run_lookups(hub.db, targets[: min(200, len(targets))])  # warm the pool
        lookup = await run_lookups(hub.db, targets)
    finally:
        await hub.stop()
    return {"ingest": asdict(ingest), "lookup": asdict(lookup)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--customers", type=int, default=1_000_000, help="customers to seed")
    p.add_argument("--contacts", type=int, default=100_000, help="contacts to ingest")
    p.add_argument("--concurrency", type=int, default=256, help="concurrent ingest callers")
    p.add_argument("--lookups", type=int, default=10_000, help="identity lookups to time")
    p.add_argument(
        "--db", help="sqlite+aiosqlite:///file (fresh) or a postgresql+asyncpg:// server URL"
    )
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
        rows = SeedRows(
            args.customers,
            args.history_every,
            ts=_sqlite_ts if sqlite else (lambda at: at),
            as_json=json.dumps,  # both take JSON as text (asyncpg's default json codec)
        )
        log(f"seeding {args.customers:,} customers")
        t0 = time.perf_counter()
        if sqlite:
            seed_sqlite(make_url(target.url).database or "", rows)
        else:
            asyncio.run(seed_postgres(target.url, rows))
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
