"""Machine mail other than bounces through the whole pipeline: auto-replies, mail
loops (the hub's loop guard), and non-email contacts passing the email steps of
the default routing.

Messages are raw RFC 5322 bytes, parsed by the email channel and ingested by
the hub with its default routing steps, as the IMAP poller does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from channels.base import InboundContact, MetaKey
from hub.runtime import Hub
from hub.store.db import Database
from hub.store.models import Conversation, Customer, Interaction
from tests.support.email_bounces import (
    OUT1,
    T0,
    add_conversation,
    add_customer,
    add_sent,
    drain,
    ingest,
    mail,
    parse,
    rows,
)
from tests.support.hubs import make_settings

pytestmark = pytest.mark.db


async def test_sms_contacts_pass_the_email_steps_untouched(hub: Hub, db: Database) -> None:
    from channels.base import Channel

    r = await hub.ingestor.ingest(
        InboundContact(
            Channel.SMS,
            "+4917155500001",
            text="Hi",
            provider_id="SM1",
            occurred_at=T0,
            metadata={MetaKey.AUTO_SUBMITTED: "auto-replied", MetaKey.IS_DSN: True},
        )
    )
    assert r.conversation_id is not None and r.created_customer


# --- auto-replies -------------------------------------------------------------


async def test_auto_reply_is_history_only(hub: Hub, db: Database) -> None:
    jane = await add_customer(db)
    conv = await add_conversation(db, jane)
    await add_sent(db, jane, conv)
    ooo = mail(
        message_id="<ooo1@customer.example>",
        subject="Automatic reply: Your order",
        body="I am out of the office until Monday.",
        headers={"Auto-Submitted": "auto-replied", "In-Reply-To": OUT1},
    )
    r = await ingest(hub, ooo)
    # Even answering our message, it joins no conversation and is not "contact".
    assert (r.customer_id, r.conversation_id) == (jane, None)
    assert await rows(
        db,
        select(Interaction.conversation_id, Interaction.meta["auto_reply"].as_string()).where(
            Interaction.id == r.interaction_id
        ),
    ) == [(None, "auto-submitted: auto-replied")]
    assert await rows(db, select(Customer.last_inbound_at)) == [(None,)]
    assert await rows(db, select(Conversation.id, Conversation.last_activity_at)) == [
        (conv, T0 - timedelta(days=1))
    ]


# --- mail loops ---------------------------------------------------------------

MAX = 3


@pytest.fixture
async def loop_hub(db_url: str, db: Database) -> AsyncIterator[Hub]:
    settings = make_settings(db_url, email={"loop_guard": {"max_messages": MAX, "minutes": 10}})
    running = Hub(settings)
    await running.start()
    yield running
    await running.stop()


async def test_mail_loop_is_throttled_and_reported_once(
    loop_hub: Hub, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    bot = "Robot <bot@loop.example>"
    caplog.set_level(logging.WARNING)
    async with loop_hub.bus.subscribe() as events:
        results = [
            await ingest(
                loop_hub,
                mail(
                    sender=bot,
                    subject=f"Ticket #{i}",
                    message_id=f"<loop{i}@loop.example>",
                    at=T0 + timedelta(seconds=10 * i),
                ),
            )
            for i in range(MAX + 3)
        ]
        got = drain(events)
    bot_id = results[0].customer_id
    first_conv = results[0].conversation_id
    assert first_conv is not None
    assert [r.conversation_id for r in results] == [first_conv] * MAX + [None] * 3
    metas = [
        m
        for (m,) in await rows(
            db,
            select(Interaction.meta)
            .where(Interaction.customer_id == bot_id)
            .order_by(Interaction.id),
        )
    ]
    assert [m.get("throttled") for m in metas] == [None] * MAX + [True] * 3
    assert [m.get("mail_loop") for m in metas] == [None] * MAX + [
        {"count": MAX + 1, "max_messages": MAX, "minutes": 10},
        None,
        None,
    ]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        f"mail loop suspected: bot@loop.example sent more than {MAX} mails in 10 minutes; "
        f"further mail from it is recorded only (customer {bot_id})"
    ]
    loops = [e for e in got if e.kind == "mail.loop"]
    assert [(e.data, e.team_id) for e in loops] == [
        (
            {"sender": "bot@loop.example", "customer_id": bot_id, "count": MAX + 1},
            results[0].team_id,
        )
    ]
    # Throttled mail is not contact: last_inbound_at stays at the last threaded one.
    assert await rows(db, select(Customer.last_inbound_at).where(Customer.id == bot_id)) == [
        (T0 + timedelta(seconds=10 * (MAX - 1)),)
    ]


@pytest.mark.usefixtures("poison_trigger")
async def test_a_batch_retried_contact_by_contact_counts_each_mail_once(
    loop_hub: Hub, db: Database
) -> None:
    bot = "Robot <bot@loop.example>"
    batch = [
        parse(
            mail(
                sender=bot,
                subject=f"Ticket #{i}",
                message_id=f"<loop{i}@loop.example>",
                at=T0 + timedelta(seconds=10 * i),
            )
        )
        for i in range(MAX)
    ]
    # One mail the database refuses: the whole batch is rolled back and every
    # contact in it routed again, alone.
    batch.append(parse(mail(subject="poison", message_id="<poison@customer.example>")))
    before = loop_hub.ingestor.batches
    results = await asyncio.gather(
        *[loop_hub.ingestor.ingest(c) for c in batch], return_exceptions=True
    )
    assert loop_hub.ingestor.batches - before == 1
    assert [type(r).__name__ for r in results] == ["IngestResult"] * MAX + ["IngestError"]
    metas = [m for (m,) in await rows(db, select(Interaction.meta).order_by(Interaction.id))]
    assert [m.get("throttled") for m in metas] == [None] * MAX
    # The next mail is the first over the limit, and it is reported.
    async with loop_hub.bus.subscribe() as events:
        await ingest(
            loop_hub,
            mail(sender=bot, message_id="<loop-next@loop.example>", at=T0 + timedelta(minutes=1)),
        )
        got = drain(events)
    assert [e.data["count"] for e in got if e.kind == "mail.loop"] == [MAX + 1]
