"""PostgreSQL: pooled connections are pinged only after sitting idle (hub/store/db.py
`_ping_when_idle`), not on every checkout. A connection cut while idle is replaced
before anyone uses it; one cut while in steady use fails the one transaction that
finds it (an ingest batch is then answered "unavailable", nothing half-stored), and
the next one lands."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

import hub.store.db as store_db
from channels.base import Channel, InboundContact
from hub.ingest.pipeline import IngestUnavailable
from hub.runtime import Hub
from hub.store.db import Database
from tests.ingest.test_failures import stored

pytestmark = pytest.mark.db


def _postgres_only(db: Database) -> None:
    if db.sqlite:
        pytest.skip("a PostgreSQL pool")


async def _cut_all(db: Database) -> int:
    """Terminate every backend of this database, as a restart of the server would, from
    a connection outside the pool (it must not cut itself)."""
    engine = create_async_engine(db.url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            return len(rows.all())
    finally:
        await engine.dispose()


async def _read_one(db: Database) -> int:
    async with db.read() as s:
        conn = await s.connection()
        return int((await conn.execute(text("SELECT 1"))).scalar_one())


async def test_an_idle_connection_cut_meanwhile_is_replaced_before_use(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    _postgres_only(db)
    assert await _read_one(db) == 1  # a connection now waits in the pool
    assert await _cut_all(db) >= 1
    monkeypatch.setattr(store_db, "PING_IDLE_SECONDS", 0.0)  # it has idled "long enough"
    assert await _read_one(db) == 1


async def test_a_connection_in_steady_use_is_not_pinged(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    _postgres_only(db)
    assert await _read_one(db) == 1
    assert await _cut_all(db) >= 1
    monkeypatch.setattr(store_db, "PING_IDLE_SECONDS", 3600.0)
    # Used again at once: no round trip to check it first, so this read finds the cut...
    with pytest.raises(DBAPIError):  # "connection is closed", or asyncpg's state error
        await _read_one(db)
    # ...and the pool has replaced it for the next.
    assert await _read_one(db) == 1


def sms(sid: str) -> InboundContact:
    return InboundContact(Channel.SMS, "+4917155571000", text="hi", provider_id=sid)


async def test_a_cut_costs_at_most_one_ingest_batch(
    hub: Hub, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    _postgres_only(db)
    monkeypatch.setattr(store_db, "PING_IDLE_SECONDS", 3600.0)
    await hub.ingestor.ingest(sms("SMcut1"))
    assert await _cut_all(db) >= 1
    try:
        await hub.ingestor.ingest(sms("SMcut2"))
    except IngestUnavailable:  # the batch that found the cut: nothing stored, retried
        await hub.ingestor.ingest(sms("SMcut2"))
    await hub.ingestor.ingest(sms("SMcut3"))
    monkeypatch.setattr(store_db, "PING_IDLE_SECONDS", 0.0)  # the test's own pool was cut too
    assert await stored(db) == ["SMcut1", "SMcut2", "SMcut3"]


async def test_after_idling_a_cut_costs_no_ingest_batch(
    hub: Hub, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    _postgres_only(db)
    await hub.ingestor.ingest(sms("SMidle1"))
    assert await _cut_all(db) >= 1
    monkeypatch.setattr(store_db, "PING_IDLE_SECONDS", 0.0)
    await hub.ingestor.ingest(sms("SMidle2"))
    assert await stored(db) == ["SMidle1", "SMidle2"]
