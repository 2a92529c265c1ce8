"""A batch PostgreSQL aborts for a deadlock with another node's batch (40P01) is
tried again; a contact that keeps conflicting is answered "unavailable" (retry),
never "refused" (a 4xx, which Twilio would not retry: the message would be lost).

The deadlock is the driver's own exception class (asyncpg's, as SQLAlchemy wraps
it) raised by the ingestor's transaction on the first tries; the real deadlock
between two nodes is in bench/webhook_nodes.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from asyncpg.exceptions import DeadlockDetectedError
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from channels.base import Channel, InboundContact
from hub.ingest.context import Prepared
from hub.ingest.pipeline import TRANSIENT_TRIES, IngestUnavailable
from hub.runtime import Hub
from hub.store.db import Database, is_outage, is_transient
from hub.store.models import Interaction


def _deadlock() -> OperationalError:
    return OperationalError(
        "UPDATE customer SET last_inbound_at=...", {}, DeadlockDetectedError("deadlock detected")
    )


def _failing(hub: Hub, fails: Callable[[list[Prepared]], bool]) -> list[int]:
    """Make the ingestor's transaction raise a deadlock while `fails(items)`; counts tries."""
    real = hub.ingestor._store
    tries: list[int] = []

    async def store(items: list[Prepared], **kw: Any) -> None:
        tries.append(len(items))
        if fails(items):
            raise _deadlock()
        await real(items, **kw)

    hub.ingestor._store = store  # type: ignore[method-assign]
    return tries


async def _stored(db: Database) -> list[str | None]:
    async with db.read() as s:
        return sorted((await s.exec(select(Interaction.provider_id))).scalars())  # type: ignore[call-overload]


def test_a_deadlock_is_transient_not_an_outage() -> None:
    assert is_transient(_deadlock()) and not is_outage(_deadlock())


async def test_a_batch_aborted_by_a_deadlock_is_stored_on_the_next_try(
    hub: Hub, db: Database
) -> None:
    first = [True]

    def once(items: list[Prepared]) -> bool:
        hit, first[0] = first[0], False
        return hit

    tries = _failing(hub, once)
    contacts = [
        InboundContact(Channel.SMS, f"+4917155570{i:02d}", text="hi", provider_id=f"SMd{i}")
        for i in range(3)
    ]
    results = await asyncio.gather(*(hub.ingestor.ingest(c) for c in contacts))
    assert [r.duplicate for r in results] == [False, False, False]
    assert await _stored(db) == ["SMd0", "SMd1", "SMd2"]
    assert tries == [3, 3]  # the same batch again, not split into singles


async def test_a_contact_that_keeps_conflicting_is_unavailable_and_the_rest_land(
    hub: Hub, db: Database
) -> None:
    tries = _failing(hub, lambda items: any(p.contact.provider_id == "SMx" for p in items))
    contacts = [
        InboundContact(Channel.SMS, "+491715557100", text="a", provider_id="SMa"),
        InboundContact(Channel.SMS, "+491715557101", text="x", provider_id="SMx"),
        InboundContact(Channel.SMS, "+491715557102", text="b", provider_id="SMb"),
    ]
    results = await asyncio.gather(
        *(hub.ingestor.ingest(c) for c in contacts), return_exceptions=True
    )
    assert [type(r).__name__ for r in results] == [
        "IngestResult",
        "IngestUnavailable",
        "IngestResult",
    ]
    assert isinstance(results[1], IngestUnavailable)
    assert str(results[1]) == "conflicting writes; retry"
    assert await _stored(db) == ["SMa", "SMb"]
    # The batch of three TRANSIENT_TRIES times, then each alone: SMx TRANSIENT_TRIES times.
    assert tries == [3] * TRANSIENT_TRIES + [1] + [1] * TRANSIENT_TRIES + [1]
