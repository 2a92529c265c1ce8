"""Shared fixtures: a migrated database (SQLite, or PostgreSQL when asked) and a running hub.

Set CRMHUB_TEST_DATABASE_URL to a PostgreSQL server URL
(postgresql+asyncpg://postgres@127.0.0.1:5432/postgres) to run the database
suites there: a fresh database is created for the session and dropped after.
CRMHUB_REQUIRE_SERVICES=1 (set by CI) turns a skip for a missing service into
a failure.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from hub.config import Settings, load_settings
from hub.runtime import Hub
from hub.store.db import Database
from hub.store.migrate import upgrade
from routing.base import Step
from routing.registry import applies_to

TABLES = [
    "mail_quarantine",
    "mail_checkpoint",
    "outbox",
    "audit_event",
    "consent",
    "task",
    "attachment",
    "interaction",
    "conversation",
    "identity",
    "customer_tag",
    "customer",
    "api_token",
    "user_team",
    "app_user",
    "team",
]


def require_service(name: str, reason: str) -> None:
    """Skip locally when a service is missing; fail in CI, where it must be there."""
    if os.environ.get("CRMHUB_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{name} is required in CI: {reason}")
    pytest.skip(f"{name} not available: {reason}")


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
            for table in TABLES:
                await conn.execute(text(f"DELETE FROM {table}"))
            # Restart AUTOINCREMENT ids, like RESTART IDENTITY below.
            await conn.execute(text("DELETE FROM sqlite_sequence"))
        else:
            await conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))


def make_settings(db_url: str, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "database": {"url": db_url},
        "teams": {
            "default": "Support",
            "by_address": {"sales@example.com": "Sales", "+49 30 5550100": "Sales"},
        },
    }
    base.update(overrides)
    return load_settings(Path(__file__).parent / "empty.yaml", **base)


@asynccontextmanager
async def hub_with_step(settings: Settings, step: Callable[[], Step]) -> AsyncIterator[Hub]:
    """A running hub whose routing runs `step` (a test's own, or a built-in one) before
    threading, on every channel it applies to."""
    name = step().name
    pipelines = settings.routing.pipelines.model_copy(
        update={
            c: [name, "thread_conversation"] if c in applies_to(name) else ["thread_conversation"]
            for c in type(settings.routing.pipelines).model_fields
        }
    )
    routing = settings.routing.model_copy(update={"pipelines": pipelines})
    running = Hub(settings.model_copy(update={"routing": routing}), extra_steps={name: step})
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


@asynccontextmanager
async def manual_dispatch(settings: Settings) -> AsyncIterator[Hub]:
    """A running hub whose outbox rounds the test runs itself (`hub.dispatcher.run_once()`),
    so what was sent when is exact and no background round races the test."""
    running = Hub(settings)

    async def rounds_run_by_the_test() -> None:
        return None

    running.dispatcher.start = rounds_run_by_the_test  # type: ignore[method-assign]
    await running.start()
    try:
        yield running
    finally:
        await running.stop()  # closes the senders (SMTP pools)


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
