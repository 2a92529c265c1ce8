"""The hourly window per channel (outbox.max_per_hour): counted, not timed."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import col, select

from hub.config import Settings
from hub.outbox.dispatcher import Dispatcher
from hub.outbox.queue import senders_from
from hub.runtime import Hub
from hub.store.db import Database
from hub.store.models import OutboxMessage, utcnow
from hub.store.tables import outbox_t
from tests.support.api import Api
from tests.support.hubs import drain_outbox
from tests.support.sms_outbound import queue, sms_conversation
from tests.support.twilio_fake import TwilioFake


async def _statuses(hub: Hub) -> list[tuple[str, str]]:
    async with hub.db.read() as s:
        query = select(OutboxMessage.body, OutboxMessage.status).order_by(col(OutboxMessage.id))
        return [(b, st) for b, st in (await s.exec(query)).all()]


async def _drain(settings: Settings) -> int:
    return await drain_outbox(settings, {"sms": 3})


async def test_a_window_of_three_per_hour_sends_three_and_keeps_the_rest_queued(
    api: Api, hub: Hub, fake: TwilioFake, settings: Settings
) -> None:
    customer_id, conv_id = await sms_conversation(hub)
    await hub.dispatcher.stop()  # these tests drive their own nodes
    async with hub.db.write() as s:
        await queue(await s.connection(), customer_id, conv_id, *(f"m{n}" for n in range(5)))

    assert await _drain(settings) == 3
    assert await _statuses(hub) == [
        ("m0", "sent"),
        ("m1", "sent"),
        ("m2", "sent"),
        ("m3", "queued"),
        ("m4", "queued"),
    ]
    # The window is read from the database: a restarted node sends nothing more.
    assert await _drain(settings) == 0
    assert len(fake.requests) == 3

    # Once those three are more than an hour old, the window has room for the rest.
    async with hub.db.write() as s:
        earlier = utcnow() - timedelta(hours=1, seconds=1)
        conn = await s.connection()
        await conn.execute(
            outbox_t.update().where(outbox_t.c.status == "sent").values(claimed_at=earlier)
        )
    assert await _drain(settings) == 2
    assert [st for _, st in await _statuses(hub)] == ["sent"] * 5
    assert sorted(r.form["Body"] for r in fake.requests) == [f"m{n}" for n in range(5)]


async def test_the_window_of_one_channel_leaves_the_others_alone(
    api: Api, hub: Hub, fake: TwilioFake, settings: Settings
) -> None:
    customer_id, conv_id = await sms_conversation(hub)
    await hub.dispatcher.stop()
    async with hub.db.write() as s:
        await queue(await s.connection(), customer_id, conv_id, *(f"m{n}" for n in range(4)))
    config = settings.outbox.model_copy(update={"max_per_hour": {"email": 1}})
    node = Dispatcher(Database(settings.database), config, senders_from(settings))
    try:
        while await node.run_once():
            pass
    finally:
        await node.stop()
        await node.db.close()
    assert [st for _, st in await _statuses(hub)] == ["sent"] * 4
