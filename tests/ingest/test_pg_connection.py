"""PostgreSQL: the ingest writer keeps its connection while busy, and a broken one
costs at most the batch that found it broken (answered "unavailable", never stored
half), never a contact acknowledged and lost."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from channels.base import Channel, InboundContact
from hub.ingest.pipeline import IngestUnavailable
from hub.runtime import Hub
from hub.store.db import Database
from tests.ingest.test_failures import stored

pytestmark = pytest.mark.db


def sms(sid: str) -> InboundContact:
    return InboundContact(Channel.SMS, "+4917155571000", text="hi", provider_id=sid)


async def _cut_other_connections(db: Database) -> int:
    """Terminate every other backend of this database (as a restart of the server would)."""
    async with db.engine.connect() as conn:
        return len(
            (
                await conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
            ).all()
        )


def _postgres_only(db: Database) -> None:
    if db.sqlite:
        pytest.skip("the writer keeps a connection on PostgreSQL only")


async def test_a_broken_kept_connection_fails_one_batch_then_the_next_one_lands(
    hub: Hub, db: Database
) -> None:
    _postgres_only(db)
    hub.ingestor.keep_idle_seconds = 3600.0  # kept: the cut is found by the next batch
    await hub.ingestor.ingest(sms("SMkeep1"))
    assert await _cut_other_connections(db) >= 1
    with pytest.raises(IngestUnavailable):
        await hub.ingestor.ingest(sms("SMkeep2"))
    await hub.ingestor.ingest(sms("SMkeep2"))  # the sender's retry
    assert await stored(db) == ["SMkeep1", "SMkeep2"]


async def test_an_idle_connection_is_exchanged_so_a_cut_costs_nothing(
    hub: Hub, db: Database
) -> None:
    _postgres_only(db)
    hub.ingestor.keep_idle_seconds = 0.0  # every batch finds its connection idle too long
    await hub.ingestor.ingest(sms("SMidle1"))
    assert await _cut_other_connections(db) >= 1
    await hub.ingestor.ingest(sms("SMidle2"))
    assert await stored(db) == ["SMidle1", "SMidle2"]
