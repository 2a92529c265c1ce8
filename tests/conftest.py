"""Shared fixtures: a migrated database (SQLite, or PostgreSQL when asked) and a running hub.

Set CRMHUB_TEST_DATABASE_URL to a PostgreSQL server URL
(postgresql+asyncpg://postgres@127.0.0.1:5432/postgres) to run the database
suites there: a fresh database is created for the session and dropped after.
CRMHUB_REQUIRE_SERVICES=1 (set by CI) turns a skip for a missing service into
a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

import hub.store.models
from hub.campaigns.scheduler import jobstore_url
from hub.config import Settings
from hub.runtime import Hub
from hub.store.db import Database
from hub.store.migrate import upgrade
from tests.support.hubs import make_settings
from tests.support.services import require_service, summary_lines

# Fixtures shared across folders, registered once (pytest allows this only here).
pytest_plugins = ["tests.support.dovecot", "tests.support.poison", "tests.support.smtp_server"]


def tables() -> list[str]:
    """Every table of the models, children before parents, so a new table needs no edit here."""
    return [table.name for table in reversed(SQLModel.metadata.sorted_tables)]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "db_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.db)


async def _admin(url: str, sql: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(sql))
    await engine.dispose()


@pytest.fixture(scope="session")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = os.environ.get("CRMHUB_TEST_DATABASE_URL")
    if not server:
        path = tmp_path_factory.mktemp("db") / "crmhub.db"
        url = f"sqlite+aiosqlite:///{path}"
        upgrade(url)
        yield url
        return
    name = f"crmhub_test_{uuid.uuid4().hex[:10]}"
    try:
        asyncio.run(_admin(server, f'CREATE DATABASE "{name}"'))
    except OSError as exc:
        require_service("PostgreSQL", str(exc))
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _clean(db: Database) -> None:
    async with db.write_engine.begin() as conn:
        if db.sqlite:
            for table in tables():
                await conn.execute(text(f"DELETE FROM {table}"))
            # Restart AUTOINCREMENT ids, like RESTART IDENTITY below.
            await conn.execute(text("DELETE FROM sqlite_sequence"))
        else:
            # APScheduler's job store too: a job left by another test names a campaign
            # id the next test reuses, and would keep that campaign from being scheduled.
            everything = ", ".join([*tables(), "apscheduler_jobs"])
            await conn.execute(text(f"TRUNCATE {everything} RESTART IDENTITY CASCADE"))
    if db.sqlite:
        _clean_sqlite_jobs(db.url)


def _clean_sqlite_jobs(url: str) -> None:
    """The job store's file beside the database (hub/campaigns/scheduler.py: jobstore_url)."""
    path = make_url(jobstore_url(url)).database
    if not path or not Path(path).exists():
        return
    # No job stored yet: no table (OperationalError).
    with (
        contextlib.closing(sqlite3.connect(path)) as jobs,
        contextlib.suppress(sqlite3.OperationalError),
    ):
        jobs.execute("DELETE FROM apscheduler_jobs")
        jobs.commit()


@pytest.fixture
def settings(db_url: str) -> Settings:
    return make_settings(db_url)


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings.database)
    await _clean(database)
    yield database
    await database.close()


@pytest.fixture
async def hub(settings: Settings, db: Database) -> AsyncIterator[Hub]:
    running = Hub(settings)
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def api(hub: Hub) -> AsyncIterator[Any]:
    from aiohttp.test_utils import TestClient, TestServer
    from sqlmodel import select

    from hub.store.models import Team
    from hub.web.app import create_app
    from tests.support.api import Api, make_users

    tokens, user_ids = await make_users(hub)
    async with hub.db.read() as s:
        team_ids = {name: tid for name, tid in (await s.exec(select(Team.name, Team.id))).all()}
    client = TestClient(TestServer(create_app(hub, manage_hub=False)))
    await client.start_server()
    yield Api(client, tokens, user_ids, team_ids)
    await client.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which missing service cost tests, and the one command that installs it."""
    reasons = []
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = getattr(report, "longrepr", None)
        if isinstance(longrepr, tuple) and len(longrepr) == 3:
            reasons.append(str(longrepr[2]))
    for line in summary_lines(reasons):
        terminalreporter.write_line(line, yellow=True, bold=True)
