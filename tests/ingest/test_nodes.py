"""Two hub nodes on one database: the same contact at the same moment is stored once."""

from __future__ import annotations

import asyncio
import logging

import pytest
from sqlalchemy import func, select, text

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


async def test_a_batch_that_meets_a_key_another_node_stored_is_tried_again_whole(
    settings: Settings, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL: a batch blocks on a provider id another node inserted and has not yet
    committed. Once that commits, the batch's insert fails; tried again as a whole, the
    contact is answered as that node's duplicate and the rest land, without a
    transaction per contact."""
    if db.sqlite:
        pytest.skip("SQLite has one writer: there a unique key cannot be raced")
    node = Hub(settings)
    await node.start()
    try:
        first = await node.ingestor.ingest(
            InboundContact(Channel.SMS, "+4917199900500", text="hi", provider_id="SMfirst")
        )
        # "Another node": a transaction that stored SMraced and has not committed yet.
        async with db.write() as other:
            row = Interaction(
                customer_id=first.customer_id,
                channel=Channel.SMS.value,
                direction="in",
                provider_id="SMraced",
                text="stored by the other node",
            )
            other.add(row)
            await other.flush()
            batch = [
                InboundContact(Channel.SMS, "+4917199900500", text="again", provider_id="SMraced"),
                *[
                    InboundContact(
                        Channel.SMS, f"+4917199901{i:03d}", text="x", provider_id=f"SMb{i}"
                    )
                    for i in range(20)
                ],
            ]
            caplog.set_level(logging.INFO, logger="hub.ingest.pipeline")
            pending = asyncio.gather(*[node.ingestor.ingest(c) for c in batch])
            for _ in range(50):  # until the batch waits on the uncommitted key
                await asyncio.sleep(0.05)
                if await _waiting_on_a_lock(db):
                    break
            else:
                raise AssertionError("the batch never waited for the other transaction")
            await other.commit()
        results = await asyncio.wait_for(pending, 30)
    finally:
        await node.stop()
    assert (results[0].duplicate, results[0].interaction_id) == (True, row.id)
    assert [r.duplicate for r in results[1:]] == [False] * 20
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "one by one" in m], messages
    assert len([m for m in messages if "met a key another node stored" in m]) == 1
    async with db.read() as s:
        count = (
            await s.exec(select(func.count()).select_from(Interaction))  # type: ignore[call-overload]
        ).scalar_one()
    assert count == 22  # SMfirst, SMraced (the other node's), 20 new


async def _waiting_on_a_lock(db: Database) -> bool:
    async with db.read() as s:
        waiting = (
            await s.exec(  # type: ignore[call-overload]
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
            )
        ).scalar_one()
    return bool(waiting)
