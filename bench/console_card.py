"""The console's customer card for a customer with a long history: server time per page.

Makes a fresh database (SQLite, or PostgreSQL with `--db`), one agent, and one
customer with `--entries` history entries (10,000) across email, SMS, phone and
notes, 3 open conversations and 5 open tasks; serves the app in this process
and logs in through the login form like a browser. Then it fetches the card
(`GET /customers/{id}`, the newest 50 entries), a page deep in the history
(`?before=` the middle entry) and the SMS-only filter, `--requests` times each,
and prints p50/p99/max. The time is measured around the request on loopback
in the same process, so it includes the client's share: an upper bound of the
server time. Goal (issue 11): < 100 ms.

    .venv/bin/python bench/console_card.py
    .venv/bin/python bench/console_card.py --db postgresql+asyncpg://postgres@127.0.0.1:5432/postgres

A benchmark, not a test: it asserts nothing about the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

if not __package__:  # run as `python bench/console_card.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
from aiohttp import web
from sqlalchemy import insert
from yarl import URL

from bench.stats import pct
from bench.target import prepare_target
from hub.config import load_settings
from hub.records.auth import create_user
from hub.runtime import Hub
from hub.store.migrate import upgrade
from hub.store.models import Role
from hub.store.tables import conversation_t, customer_t, interaction_t, task_t
from hub.web.app import create_app

PASSWORD = "bench-console-1"
CHANNELS = ("email", "sms", "phone", "note")
GOAL_MS = 100.0


async def seed(hub: Hub, entries: int) -> tuple[int, str]:
    """The customer with `entries` history entries; returns its id and the middle cursor."""
    agent = await create_user(
        hub.db, "agent", role=Role.AGENT, teams=["Support"], password=PASSWORD, password_cost=12
    )
    start = datetime(2024, 1, 1, tzinfo=UTC)
    async with hub.db.write() as s:
        conn = await s.connection()
        team_id = agent_team = hub.teams.default_team_id
        customer_id = (
            await conn.execute(
                insert(customer_t)
                .values(
                    name="Erika Mustermann",
                    company="Muster GmbH",
                    kind="customer",
                    team_id=team_id,
                    owner_id=agent.id,
                    custom={},
                    created_at=start,
                    updated_at=start,
                )
                .returning(customer_t.c.id)
            )
        ).scalar_one()
        conversations = []
        for n in range(3):
            conversations.append(
                (
                    await conn.execute(
                        insert(conversation_t)
                        .values(
                            customer_id=customer_id,
                            channel=CHANNELS[n],
                            subject=f"Thema {n}",
                            status="open",
                            team_id=agent_team,
                            created_at=start,
                            last_activity_at=start,
                        )
                        .returning(conversation_t.c.id)
                    )
                ).scalar_one()
            )
        rows = [
            {
                "customer_id": customer_id,
                "conversation_id": conversations[i % 3] if i % 4 != 3 else None,
                "channel": CHANNELS[i % 4],
                "direction": "in" if i % 2 else "out",
                "occurred_at": start + timedelta(minutes=7 * i),
                "subject": f"Betreff {i}" if i % 4 == 0 else "",
                "text": f"Nachricht {i}: " + "Lorem ipsum dolor sit amet. " * 4,
                "meta": {},
            }
            for i in range(entries)
        ]
        for chunk in range(0, len(rows), 2000):
            await conn.execute(insert(interaction_t), rows[chunk : chunk + 2000])
        await conn.execute(
            insert(task_t),
            [
                {
                    "customer_id": customer_id,
                    "title": f"Wiedervorlage {n}",
                    "assignee_id": agent.id,
                    "due_at": start + timedelta(days=n),
                    "done": False,
                    "created_at": start,
                }
                for n in range(5)
            ],
        )
    middle = start + timedelta(minutes=7 * (entries // 2))
    return customer_id, f"{middle.isoformat()}_{entries}"


async def timed(client: aiohttp.ClientSession, url: str, n: int) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        async with client.get(url, allow_redirects=False) as resp:
            body = await resp.read()
            if resp.status != 200 or b'id="timeline"' not in body:
                raise SystemExit(f"bench: {url} answered {resp.status}")
        times.append((time.perf_counter() - t0) * 1000)
    return sorted(times)


async def run(url: str, entries: int, requests: int) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as empty:  # not ./config.yaml
        empty.write("{}\n")
        empty.flush()
        settings = load_settings(
            empty.name,
            database={"url": url},
            auth={"password_cost": 12},
            teams={"default": "Support"},
        )
    hub = Hub(settings)
    await hub.start()
    runner = web.AppRunner(create_app(hub, manage_hub=False), access_log=None)
    try:
        t0 = time.perf_counter()
        customer_id, middle = await seed(hub, entries)
        print(f"seeded {entries:,} history entries in {time.perf_counter() - t0:.1f} s")
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
            async with client.get(base + "/login") as resp:
                await resp.read()
            csrf = client.cookie_jar.filter_cookies(URL(base)).get("crmhub_csrf")
            form = {"username": "agent", "password": PASSWORD, "next": "/"}
            form["csrf"] = csrf.value if csrf else ""
            async with client.post(base + "/login", data=form, allow_redirects=False) as resp:
                if resp.status != 303:
                    raise SystemExit(f"bench: login answered {resp.status}")
            card = f"{base}/customers/{customer_id}"
            pages = {
                "card (newest 50)": card,
                "deep page (?before=middle)": f"{card}?before={quote(middle)}",
                "SMS only": f"{card}?channel=sms",
            }
            await timed(client, card, 20)  # warm-up: caches, compiled statements
            print(f"{'page':28} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
            for name, page in pages.items():
                times = await timed(client, page, requests)
                p99 = pct(times, 99)
                print(
                    f"{name:28} {pct(times, 50):8.1f} {p99:8.1f} {times[-1]:8.1f}"
                    f"  {'under' if p99 < GOAL_MS else 'OVER'} the {GOAL_MS:.0f} ms goal"
                )
    finally:
        await runner.cleanup()
        await hub.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", help="database URL (default: a fresh SQLite file)")
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()
    target = prepare_target(args.db, args.keep)
    print(f"database: {target.where}")
    try:
        upgrade(target.url)
        asyncio.run(run(target.url, args.entries, args.requests))
    finally:
        target.cleanup()


if __name__ == "__main__":
    main()
