"""A burst past `ingest.max_queue` is answered 503 + Retry-After, not held in memory."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select

from channels.base import Channel, InboundContact
from hub.config import Settings
from hub.ingest.pipeline import IngestUnavailable
from hub.store.db import Database
from hub.store.models import Interaction
from routing.base import Decision, RoutingContext
from tests.support.hubs import hub_with_step
from tests.support.sms import post_signed, sms_client, twilio_form

pytestmark = pytest.mark.db


class Gate:
    """Holds the writer inside its batch until the test opens it (a slow database)."""

    name = "gate"
    description = "wait for the test"
    opened = asyncio.Event()
    entered = asyncio.Event()

    async def process(
        self, contact: InboundContact, decision: Decision, ctx: RoutingContext
    ) -> None:
        Gate.entered.set()
        await Gate.opened.wait()


def sms(n: int) -> InboundContact:
    return InboundContact(Channel.SMS, f"+491715558{n:04d}", text="hi", provider_id=f"SMq{n}")


async def _stored(db: Database) -> list[str | None]:
    async with db.read() as s:
        rows = await s.exec(select(Interaction.provider_id).order_by(Interaction.id))  # type: ignore[call-overload]
        return list(rows.scalars())


async def test_past_the_bound_ingest_refuses_and_what_it_took_is_stored(
    settings: Settings, db: Database
) -> None:
    Gate.opened, Gate.entered = asyncio.Event(), asyncio.Event()
    ingest = settings.ingest.model_copy(update={"max_queue": 2})
    async with hub_with_step(settings.model_copy(update={"ingest": ingest}), Gate) as hub:
        first = asyncio.create_task(hub.ingestor.ingest(sms(0)))
        await Gate.entered.wait()  # the writer holds contact 0 in its batch
        queued = [asyncio.create_task(hub.ingestor.ingest(sms(n))) for n in (1, 2)]
        await asyncio.sleep(0)
        with pytest.raises(IngestUnavailable) as refused:
            await hub.ingestor.ingest(sms(3))
        assert str(refused.value) == "ingest queue full (2 waiting); retry"
        Gate.opened.set()
        results = await asyncio.gather(first, *queued)
        assert [r.duplicate for r in results] == [False, False, False]
        assert await _stored(db) == ["SMq0", "SMq1", "SMq2"]
        # With room again, the refused contact is taken (the provider's retry).
        await hub.ingestor.ingest(sms(3))
        assert await _stored(db) == ["SMq0", "SMq1", "SMq2", "SMq3"]


async def test_a_webhook_past_the_bound_is_503_with_retry_after(
    db_url: str, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with sms_client(db_url) as (client, hub):
        hub.ingestor.max_queue = 0  # full: as if a burst were waiting
        resp = await post_signed(client, twilio_form("SMburst"))
        body: Any = await resp.json()
        assert (resp.status, resp.headers["Retry-After"], body) == (
            503,
            "1",
            {"error": "unavailable", "detail": "ingest queue full (0 waiting); retry"},
        )
        assert await _stored(db) == []
