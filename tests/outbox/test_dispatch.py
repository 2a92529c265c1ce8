"""The dispatcher: consent at send time, leases, several nodes, shutdown, round size,
one call for all due rows."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlmodel import col, select

from channels.base import DeliveryResult, OutboundMessage
from hub.config import Settings
from hub.outbox.dispatcher import Dispatcher
from hub.outbox.queue import senders_from
from hub.runtime import Hub
from hub.store.db import Database
from hub.store.models import Consent, OutboxMessage, utcnow
from hub.store.tables import outbox_t
from tests.support.api import Api
from tests.support.sms_outbound import (
    eventually,
    interaction,
    outbox_row,
    queue,
    sms_conversation,
)
from tests.support.twilio_fake import TwilioFake


async def test_an_opt_out_after_queuing_blocks_the_send(
    api: Api, hub: Hub, fake: TwilioFake
) -> None:
    customer_id, conv_id = await sms_conversation(hub)
    async with hub.db.write() as s:  # queued and opted out in one go: the dispatcher decides
        [queued] = await queue(await s.connection(), customer_id, conv_id, "Angebot")
        s.add(Consent(customer_id=customer_id, channel="sms", state="opted_out", source="STOP"))
    hub.dispatcher.wake()
    row = await eventually(lambda: outbox_row(hub, "blocked"))
    assert (row.attempts, row.last_error) == (0, "recipient opted out of SMS")
    assert (await interaction(hub, queued.interaction_id)).delivery_status == "blocked"
    assert fake.requests == []


async def test_a_claim_whose_lease_expired_is_sent_again(
    api: Api, hub: Hub, fake: TwilioFake
) -> None:
    customer_id, conv_id = await sms_conversation(hub)
    async with hub.db.write() as s:  # a node claimed it, then died before sending
        await queue(await s.connection(), customer_id, conv_id, "x")
        stale = utcnow() - timedelta(seconds=hub.settings.outbox.lease_seconds + 1)
        conn = await s.connection()
        await conn.execute(outbox_t.update().values(status="sending", claimed_at=stale, attempts=1))
    hub.dispatcher.wake()
    row = await eventually(lambda: outbox_row(hub, "sent"))
    assert (row.attempts, len(fake.requests)) == (2, 1)


async def test_several_dispatchers_send_each_row_once(
    api: Api, hub: Hub, fake: TwilioFake, settings: Settings
) -> None:
    """Nodes sharing one database: FOR UPDATE SKIP LOCKED (PostgreSQL) or the single
    SQLite writer means no row is claimed twice, however the rounds interleave."""
    customer_id, conv_id = await sms_conversation(hub)
    async with hub.db.write() as s:
        conn = await s.connection()
        await queue(conn, customer_id, conv_id, *(f"m{n}" for n in range(30)))
    config = settings.outbox.model_copy(update={"batch_size": 3})
    nodes = [Dispatcher(Database(settings.database), config, senders_from(settings)) for _ in "ab"]
    try:
        for _ in range(100):
            handled = await asyncio.gather(*(node.run_once() for node in nodes))
            if sum(handled) == 0 and await outbox_row(hub, "queued") is None:
                break
        sent = await eventually(lambda: _all_sent(hub, 30))
    finally:
        for node in nodes:
            await node.stop()
            await node.db.close()
    bodies = sorted(r.form["Body"] for r in fake.requests)
    assert bodies == sorted(f"m{n}" for n in range(30))  # each once: no duplicates
    assert sent == 30


async def _all_sent(hub: Hub, expected: int) -> int | None:
    async with hub.db.read() as s:
        rows = (await s.exec(select(OutboxMessage.status, OutboxMessage.attempts))).all()
    done = [r for r in rows if r == ("sent", 1)]
    return len(done) if len(done) == expected else None


async def test_stopping_gives_back_claims_it_did_not_send(
    api: Api, hub: Hub, fake: TwilioFake, settings: Settings
) -> None:
    customer_id, conv_id = await sms_conversation(hub)
    await hub.dispatcher.stop()  # this test drives its own dispatcher
    async with hub.db.write() as s:
        conn = await s.connection()
        await queue(conn, customer_id, conv_id, *(f"m{n}" for n in range(3)))
    real = senders_from(settings)["sms"]
    node = Dispatcher(Database(settings.database), settings.outbox, {"sms": real})

    class StopAfterOne:
        """The real sender; the node is told to stop while the first message is out."""

        channel, max_body_length, rate_per_second = real.channel, 1600, 1000.0
        sender, concurrency = real.sender, 4  # all three claimed at once
        close = real.close

        async def send(self, message: OutboundMessage) -> DeliveryResult:
            node._stopping = True
            return await real.send(message)

    node.senders = {"sms": StopAfterOne()}
    try:
        assert await node.run_once() == 3
    finally:
        await node.stop()
        await node.db.close()
    async with hub.db.read() as s:
        rows = (
            await s.exec(
                select(OutboxMessage.body, OutboxMessage.status, OutboxMessage.attempts).order_by(
                    col(OutboxMessage.id)
                )
            )
        ).all()
    assert rows == [("m0", "sent", 1), ("m1", "queued", 0), ("m2", "queued", 0)]
    assert [r.form["Body"] for r in fake.requests] == ["m0"]


def test_a_round_never_claims_more_than_the_rate_sends_within_the_lease(
    settings: Settings,
) -> None:
    slow = settings.model_copy(
        update={"sms": settings.sms.model_copy(update={"rate_per_second": 0.01})}
    )
    assert Dispatcher(Database(slow.database), slow.outbox, senders_from(slow)).batch_size == 1
    fast = Dispatcher(Database(settings.database), settings.outbox, senders_from(settings))
    assert fast.batch_size == settings.outbox.batch_size == 20


async def test_one_call_sends_every_due_row_while_another_channel_has_none(
    api: Api, hub: Hub, fake: TwilioFake, settings: Settings
) -> None:
    """A node with SMS and email, only SMS due: the email channel's empty claim does
    not end the call (it ended it after the first group of sends, draining the SMS
    pipeline every cycle), and batch_size bounds the claims held at once, not the
    rows of a call."""
    customer_id, conv_id = await sms_conversation(hub)
    await hub.dispatcher.stop()  # this test drives its own dispatcher
    async with hub.db.write() as s:
        await queue(await s.connection(), customer_id, conv_id, *(f"m{n}" for n in range(30)))

    class NoEmail:
        """The email channel of the node, with nothing queued for it."""

        channel, max_body_length, rate_per_second, concurrency = "email", 1000, 1000.0, 4
        sender = "news@example.com"

        async def send(self, message: OutboundMessage) -> DeliveryResult:
            raise AssertionError("no email was queued")

        async def close(self) -> None:
            pass

    config = settings.outbox.model_copy(update={"batch_size": 3})
    node = Dispatcher(
        Database(settings.database), config, {**senders_from(settings), "email": NoEmail()}
    )
    try:
        assert await node.run_once() == 30
        assert await node.run_once() == 0
    finally:
        await node.stop()
        await node.db.close()
    assert await _all_sent(hub, 30) == 30
    assert sorted(r.form["Body"] for r in fake.requests) == sorted(f"m{n}" for n in range(30))
