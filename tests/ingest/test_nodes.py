"""Two hub nodes on one database: the same contact at the same moment is stored once."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from channels.base import Channel, InboundContact
from hub.config import Settings
from hub.runtime import Hub
from hub.store.db import Database
from hub.store.models import Customer, Identity, Interaction


async def test_two_nodes_store_a_raced_contact_once(settings: Settings, db: Database) -> None:
    nodes = [Hub(settings), Hub(settings)]
    for node in nodes:
        await node.start()
    try:
        contacts = [
            InboundContact(Channel.SMS, f"+4917199900{i:02d}", text="hi", provider_id=f"SMrace{i}")
            for i in range(20)
        ]
        # Every contact reaches both nodes at once (a provider retry racing the original).
        results = await asyncio.gather(
            *[node.ingestor.ingest(c) for c in contacts for node in nodes]
        )
    finally:
        for node in nodes:
            await node.stop()
    for i in range(20):
        first, second = results[2 * i], results[2 * i + 1]
        assert (first.interaction_id, first.customer_id) == (
            second.interaction_id,
            second.customer_id,
        )
        assert sorted([first.duplicate, second.duplicate]) == [False, True]
    async with db.read() as s:
        for model in (Interaction, Customer, Identity):
            count = (await s.exec(select(func.count()).select_from(model))).scalar_one()  # type: ignore[call-overload]
            assert count == 20, model.__name__
