"""SMS threading: the open SMS conversation, else the one of our last SMS within the window."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from channels.base import Channel, InboundContact
from hub.runtime import Hub
from hub.store.db import Database
from hub.store.models import Conversation, Customer, Identity, Interaction
from tests.support.sms import post_signed, rows, sms_client, twilio_form

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
NUMBER = "+4917155500001"


@pytest.fixture
async def sms_hub(db_url: str, db: Database) -> AsyncIterator[tuple[TestClient[Any, Any], Hub]]:
    async with sms_client(db_url, reply_window_hours=72) as running:
        yield running


async def customer(db: Database) -> int:
    async with db.write() as s:
        c = Customer(kind="customer", name="Erika Muster")
        s.add(c)
        await s.flush()
        assert c.id is not None
        s.add(Identity(customer_id=c.id, kind="phone", value=NUMBER, raw=NUMBER, primary=True))
        return c.id


async def conversation(
    db: Database, customer_id: int, status: str, *, channel: str = "sms", sent_at: datetime | None
) -> int:
    """A conversation; with `sent_at`, holding an SMS we sent then (as the outbox will)."""
    async with db.write() as s:
        conv = Conversation(
            customer_id=customer_id,
            channel=channel,
            status=status,
            subject="Campaign",
            last_activity_at=sent_at or NOW - timedelta(days=30),
        )
        s.add(conv)
        await s.flush()
        assert conv.id is not None
        if sent_at is not None:
            s.add(
                Interaction(
                    customer_id=customer_id,
                    conversation_id=conv.id,
                    channel=channel,
                    direction="out",
                    occurred_at=sent_at,
                    text="Our autumn offer",
                    provider_id=f"SMout{conv.id}",
                    recipient=NUMBER,
                )
            )
        return conv.id


async def reply(hub: Hub, sid: str, at: datetime = NOW) -> int | None:
    contact = InboundContact(
        Channel.SMS, NUMBER, text="Interested!", provider_id=sid, occurred_at=at
    )
    return (await hub.ingestor.ingest(contact)).conversation_id


async def test_reply_within_window_joins_the_campaign_conversation_and_reopens_it(
    sms_hub: tuple[TestClient[Any, Any], Hub], db: Database
) -> None:
    cid = await customer(db)
    older = await conversation(db, cid, "closed", sent_at=NOW - timedelta(hours=50))
    campaign = await conversation(db, cid, "closed", sent_at=NOW - timedelta(hours=2))
    assert await reply(sms_hub[1], "SMr1") == campaign
    assert await rows(
        db, select(Conversation.id, Conversation.status).order_by(Conversation.id)
    ) == [
        (older, "closed"),
        (campaign, "open"),
    ]


async def test_reply_at_the_window_edge_still_joins(
    sms_hub: tuple[TestClient[Any, Any], Hub], db: Database
) -> None:
    cid = await customer(db)
    campaign = await conversation(db, cid, "closed", sent_at=NOW - timedelta(hours=72))
    assert await reply(sms_hub[1], "SMr1") == campaign


async def test_reply_outside_window_opens_a_new_conversation(
    sms_hub: tuple[TestClient[Any, Any], Hub], db: Database
) -> None:
    cid = await customer(db)
    campaign = await conversation(db, cid, "closed", sent_at=NOW - timedelta(hours=73))
    new = await reply(sms_hub[1], "SMr1")
    assert new not in (None, campaign)
    assert await rows(db, select(Conversation.status).where(Conversation.id == campaign)) == [
        ("closed",)
    ]


async def test_open_sms_conversation_wins_over_the_window(
    sms_hub: tuple[TestClient[Any, Any], Hub], db: Database
) -> None:
    cid = await customer(db)
    open_one = await conversation(db, cid, "open", sent_at=None)
    await conversation(db, cid, "closed", sent_at=NOW - timedelta(hours=1))
    assert await reply(sms_hub[1], "SMr1") == open_one


async def test_messages_on_other_channels_or_inbound_do_not_count(
    sms_hub: tuple[TestClient[Any, Any], Hub], db: Database
) -> None:
    cid = await customer(db)
    email = await conversation(db, cid, "closed", channel="email", sent_at=NOW - timedelta(hours=1))
    inbound = await conversation(db, cid, "closed", sent_at=None)
    async with db.write() as s:
        s.add(
            Interaction(
                customer_id=cid,
                conversation_id=inbound,
                channel="sms",
                direction="in",
                occurred_at=NOW - timedelta(hours=1),
                provider_id="SMin0",
            )
        )
    assert await reply(sms_hub[1], "SMr1") not in (None, email, inbound)


async def test_our_message_after_the_reply_does_not_count(
    sms_hub: tuple[TestClient[Any, Any], Hub], db: Database
) -> None:
    cid = await customer(db)
    later = await conversation(db, cid, "closed", sent_at=NOW + timedelta(minutes=5))
    assert await reply(sms_hub[1], "SMr1") != later


async def test_zero_window_turns_the_rule_off(db_url: str, db: Database) -> None:
    cid = await customer(db)
    campaign = await conversation(db, cid, "closed", sent_at=NOW - timedelta(minutes=1))
    async with sms_client(db_url, reply_window_hours=0) as (_, hub):
        assert await reply(hub, "SMr1") != campaign


async def test_webhook_reply_is_attributed_to_the_campaign(
    sms_hub: tuple[TestClient[Any, Any], Hub], db: Database
) -> None:
    cid = await customer(db)
    campaign = await conversation(db, cid, "closed", sent_at=datetime.now(UTC) - timedelta(hours=3))
    resp = await post_signed(sms_hub[0], twilio_form("SMweb", "Ja, gerne", From=NUMBER))
    assert resp.status == 200
    assert await rows(
        db,
        select(Interaction.customer_id, Interaction.conversation_id).where(
            Interaction.direction == "in"
        ),
    ) == [(cid, campaign)]
