"""Bounces through the whole pipeline: matching a report to the mail we sent, the
marks on the email identity, and the bounced message and its outbox row.

Messages are raw RFC 5322 bytes, parsed by the email channel and ingested by
the hub with its default routing steps, as the IMAP poller does.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select

from hub.ingest.context import BatchContext
from hub.runtime import Hub
from hub.store.db import Database
from hub.store.models import Conversation, Customer, Identity, Interaction, OutboxMessage
from routing.base import CustomerRef, SentMessage
from tests.support.email_bounces import (
    JANE,
    MAILBOX_FULL,
    OUT1,
    T0,
    USER_UNKNOWN,
    add_conversation,
    add_customer,
    add_sent,
    drain,
    dsn,
    ingest,
    mail,
    marks,
    parse,
    rows,
)

pytestmark = pytest.mark.db


# --- bounces ------------------------------------------------------------------


async def test_permanent_bounce_marks_address_message_and_outbox(hub: Hub, db: Database) -> None:
    jane = await add_customer(db)
    conv = await add_conversation(db, jane)
    sent_id, outbox_id = await add_sent(db, jane, conv)
    async with hub.bus.subscribe() as events:
        r = await ingest(hub, dsn(message_id="<dsn1@mx>", status="5.1.1", diagnostic=USER_UNKNOWN))
        got = drain(events)

    assert await marks(db) == (True, f"5.1.1 {USER_UNKNOWN}", 0)
    assert await rows(db, select(Interaction.delivery_status).where(Interaction.id == sent_id)) == [
        ("bounced",)
    ]
    assert await rows(
        db,
        select(OutboxMessage.status, OutboxMessage.last_error).where(OutboxMessage.id == outbox_id),
    ) == [("failed", f"bounced: {JANE} 5.1.1 {USER_UNKNOWN}")]
    # The report is on Jane's history, outside any conversation; no lead for the daemon.
    assert (r.customer_id, r.conversation_id, r.created_customer) == (jane, None, False)
    (bounce,) = await rows(
        db,
        select(
            Interaction.customer_id,
            Interaction.conversation_id,
            Interaction.direction,
            Interaction.provider_id,
            Interaction.meta,
        ).where(Interaction.id == r.interaction_id),
    )
    assert bounce[:4] == (jane, None, "in", "<dsn1@mx>")
    assert bounce[4]["bounce"] == f"{JANE} 5.1.1 failed"
    assert bounce[4]["bounced_interaction_id"] == sent_id
    assert await rows(db, select(Customer.id, Customer.last_inbound_at)) == [(jane, None)]
    assert await rows(db, select(func.count()).select_from(Identity)) == [(1,)]
    assert await rows(db, select(Conversation.id, Conversation.last_activity_at)) == [
        (conv, T0 - timedelta(days=1))
    ]
    assert [(e.kind, e.data) for e in got] == [
        (
            "interaction.created",
            {
                "interaction_id": r.interaction_id,
                "customer_id": jane,
                "conversation_id": None,
                "channel": "email",
                "direction": "in",
                "sender": "mailer-daemon@mx.customer.example",
                "recipient": "support@crm.example",
                "subject": "Undelivered Mail Returned to Sender",
                "delivery_status": None,
                "created_customer": False,
            },
        ),
        (
            "interaction.delivery",
            {
                "interaction_id": sent_id,
                "customer_id": jane,
                "conversation_id": conv,
                "delivery_status": "bounced",
                "error_code": "5.1.1",
            },
        ),
    ]


async def test_second_report_of_the_same_bounce_changes_nothing_more(
    hub: Hub, db: Database
) -> None:
    jane = await add_customer(db)
    sent_id, _ = await add_sent(db, jane, None)
    await ingest(hub, dsn(message_id="<dsn1@mx>", status="5.1.1", diagnostic=USER_UNKNOWN))
    async with hub.bus.subscribe() as events:
        again = await ingest(
            hub, dsn(message_id="<dsn2@mx>", status="5.1.1", diagnostic=USER_UNKNOWN)
        )
        got = drain(events)
    assert [e.kind for e in got] == ["interaction.created"]  # no second delivery event
    assert again.customer_id == jane
    assert await rows(db, select(Interaction.delivery_status).where(Interaction.id == sent_id)) == [
        ("bounced",)
    ]


async def test_temporary_bounces_are_counted_without_a_mark(hub: Hub, db: Database) -> None:
    jane = await add_customer(db)
    sent_id, outbox_id = await add_sent(db, jane, None)
    await ingest(hub, dsn(message_id="<dsn1@mx>", status="4.2.2", diagnostic=MAILBOX_FULL))
    assert await marks(db) == (False, None, 1)
    await ingest(
        hub,
        dsn(message_id="<dsn2@mx>", status="4.2.2", diagnostic=MAILBOX_FULL, at=T0 + timedelta(1)),
    )
    assert await marks(db) == (False, None, 2)
    # A delay is not a failure: the message and its outbox row stay as they were.
    assert await rows(db, select(Interaction.delivery_status).where(Interaction.id == sent_id)) == [
        ("sent",)
    ]
    assert await rows(
        db,
        select(OutboxMessage.status, OutboxMessage.last_error).where(OutboxMessage.id == outbox_id),
    ) == [("sent", None)]
    assert await rows(db, select(Customer.id)) == [(jane,)]


async def test_mail_from_the_address_clears_the_marks_machine_mail_does_not(
    hub: Hub, db: Database
) -> None:
    jane = await add_customer(db)
    await add_sent(db, jane, None)
    await ingest(hub, dsn(message_id="<dsn1@mx>", status="4.2.2", diagnostic=MAILBOX_FULL))
    await ingest(hub, dsn(message_id="<dsn2@mx>", status="5.1.1", diagnostic=USER_UNKNOWN))
    assert await marks(db) == (True, f"5.1.1 {USER_UNKNOWN}", 1)
    # Jane's out-of-office proves nothing about a person reading the mailbox.
    ooo = mail(
        message_id="<ooo1@customer.example>",
        subject="Out of office",
        headers={"Auto-Submitted": "auto-replied"},
    )
    await ingest(hub, ooo)
    assert await marks(db) == (True, f"5.1.1 {USER_UNKNOWN}", 1)
    r = await ingest(hub, mail(message_id="<m1@customer.example>", at=T0 + timedelta(hours=1)))
    assert r.customer_id == jane
    assert await marks(db) == (False, None, 0)


async def test_mail_clears_counted_soft_bounces_and_leaves_other_addresses_alone(
    hub: Hub, db: Database
) -> None:
    """The match reads which identities carry a mark (SQLite then clears only those): a
    count of soft bounces alone is one, and a mail from someone without one clears nothing."""
    jane = await add_customer(db)
    await add_sent(db, jane, None)
    await ingest(hub, dsn(message_id="<dsn1@mx>", status="4.2.2", diagnostic=MAILBOX_FULL))
    assert await marks(db) == (False, None, 1)
    other = await add_customer(db, email="other@customer.example")
    r = await ingest(hub, mail(message_id="<o1@customer.example>", sender="other@customer.example"))
    assert r.customer_id == other
    assert await marks(db) == (False, None, 1)
    await ingest(hub, mail(message_id="<m1@customer.example>", at=T0 + timedelta(hours=1)))
    assert await marks(db) == (False, None, 0)


@pytest.mark.parametrize(
    ("status", "diagnostic"), [("5.1.1", USER_UNKNOWN), ("4.2.2", MAILBOX_FULL)]
)
async def test_bounce_for_a_message_we_did_not_send_stays_with_the_daemon(
    hub: Hub, db: Database, status: str, diagnostic: str
) -> None:
    jane = await add_customer(db)
    r = await ingest(
        hub,
        dsn(
            message_id="<dsn1@mx>",
            status=status,
            diagnostic=diagnostic,
            original="<someone-else@elsewhere.example>",
        ),
    )
    # Recorded on the sender (a lead, as any unknown sender), in no conversation;
    # the address it reports is not ours to judge by it: nothing is marked.
    assert r.created_customer and r.customer_id != jane and r.conversation_id is None
    assert await rows(db, select(Identity.value).where(Identity.customer_id == r.customer_id)) == [
        ("mailer-daemon@mx.customer.example",)
    ]
    assert await marks(db) == (False, None, 0)
    assert await rows(db, select(func.count()).select_from(Conversation)) == [(0,)]
    (meta,) = await rows(db, select(Interaction.meta).where(Interaction.id == r.interaction_id))
    assert meta[0]["bounce"] == f"{JANE} {status} {'failed' if status[0] == '5' else 'delayed'}"
    assert meta[0]["bounce_ignored"] == "no matching sent message"
    assert "bounced_interaction_id" not in meta[0]


BOB = "bob@other.example"
BOB_UNKNOWN = "550 5.1.1 <bob@other.example>: Recipient address rejected: User unknown"


@pytest.mark.parametrize(("status", "diagnostic"), [("5.1.1", BOB_UNKNOWN), ("4.2.2", "452 full")])
async def test_bounce_quoting_our_message_about_another_address_marks_nobody(
    hub: Hub, db: Database, status: str, diagnostic: str
) -> None:
    jane = await add_customer(db)
    bob = await add_customer(db, BOB, "Bob")
    sent_id, outbox_id = await add_sent(db, jane, None)
    async with hub.bus.subscribe() as events:
        r = await ingest(
            hub,
            dsn(message_id="<dsn1@mx>", status=status, diagnostic=diagnostic, recipient=BOB),
        )
        got = drain(events)
    assert await marks(db, JANE) == (False, None, 0)
    assert await marks(db, BOB) == (False, None, 0)
    assert await rows(db, select(Interaction.delivery_status).where(Interaction.id == sent_id)) == [
        ("sent",)
    ]
    assert await rows(
        db,
        select(OutboxMessage.status, OutboxMessage.last_error).where(OutboxMessage.id == outbox_id),
    ) == [("sent", None)]
    # History of the message it quotes, with the reason it changed nothing.
    assert (r.customer_id, r.conversation_id, r.created_customer) == (jane, None, False)
    (meta,) = await rows(db, select(Interaction.meta).where(Interaction.id == r.interaction_id))
    assert meta[0]["bounced_interaction_id"] == sent_id
    assert meta[0]["bounce_ignored"] == "recipient not in the original message"
    assert [e.kind for e in got] == ["interaction.created"]
    assert await rows(db, select(Customer.id).order_by(Customer.id)) == [(jane,), (bob,)]


async def test_a_report_on_several_addresses_counts_only_the_one_we_wrote_to(
    hub: Hub, db: Database
) -> None:
    jane = await add_customer(db)
    await add_customer(db, BOB, "Bob")
    sent_id, outbox_id = await add_sent(db, jane, None)
    await ingest(
        hub,
        dsn(message_id="<dsn1@mx>", status="5.1.1", diagnostic=USER_UNKNOWN, others=(BOB,)),
    )
    assert await marks(db, JANE) == (True, f"5.1.1 {USER_UNKNOWN}", 0)
    assert await marks(db, BOB) == (False, None, 0)
    assert await rows(
        db,
        select(OutboxMessage.status, OutboxMessage.last_error).where(OutboxMessage.id == outbox_id),
    ) == [("failed", f"bounced: {JANE} 5.1.1 {USER_UNKNOWN}")]
    assert await rows(db, select(Interaction.delivery_status).where(Interaction.id == sent_id)) == [
        ("bounced",)
    ]


async def test_a_forwarded_address_counts_by_its_original_recipient(hub: Hub, db: Database) -> None:
    jane = await add_customer(db)
    sent_id, _ = await add_sent(db, jane, None)
    forwarded = "jane.doe@new-employer.example"
    r = await ingest(
        hub,
        dsn(message_id="<dsn1@mx>", status="5.1.1", diagnostic="550 5.1.1 gone", final=forwarded),
    )
    assert await marks(db) == (True, "5.1.1 550 5.1.1 gone", 0)
    assert await rows(db, select(Interaction.delivery_status).where(Interaction.id == sent_id)) == [
        ("bounced",)
    ]
    (meta,) = await rows(db, select(Interaction.meta).where(Interaction.id == r.interaction_id))
    assert "bounce_ignored" not in meta[0]


async def test_prose_from_any_mailer_daemon_marks_nothing(hub: Hub, db: Database) -> None:
    jane = await add_customer(db)
    sent_id, _ = await add_sent(db, jane, None)
    prose = mail(
        sender="MAILER-DAEMON@anything.example",
        subject="Undelivered Mail Returned to Sender",
        message_id="<prose1@anything.example>",
        body=f"<{JANE}>: host mx.customer.example said: 550 5.1.1 User unknown",
    )
    r = await ingest(hub, prose)
    assert await marks(db) == (False, None, 0)
    assert await rows(db, select(Interaction.delivery_status).where(Interaction.id == sent_id)) == [
        ("sent",)
    ]
    (meta,) = await rows(db, select(Interaction.meta).where(Interaction.id == r.interaction_id))
    assert (meta[0]["bounce"], meta[0]["bounce_ignored"]) == (
        f"{JANE} 5.1.1 failed",
        "no matching sent message",
    )
    assert r.conversation_id is None


async def test_a_bounce_storm_in_one_batch(hub: Hub, db: Database) -> None:
    jane = await add_customer(db)
    bob = await add_customer(db, BOB, "Bob")
    jane_sent, jane_outbox = await add_sent(db, jane, None)
    bob_sent, bob_outbox = await add_sent(
        db, bob, None, provider_id="<out2@crm.example>", recipient=BOB
    )
    reports = [
        dsn(message_id="<dsn1@mx>", status="5.1.1", diagnostic=USER_UNKNOWN),
        dsn(message_id="<dsn2@mx>", status="5.1.1", diagnostic=USER_UNKNOWN),
        dsn(
            message_id="<dsn3@mx>",
            status="4.2.2",
            diagnostic="452 full",
            original="<out2@crm.example>",
            recipient=BOB,
        ),
        dsn(message_id="<dsn4@mx>", status="5.1.1", diagnostic=BOB_UNKNOWN, recipient=BOB),
        dsn(
            message_id="<dsn5@mx>",
            status="5.1.1",
            diagnostic=BOB_UNKNOWN,
            original="<forged@elsewhere.example>",
            recipient=BOB,
        ),
    ]
    before = hub.ingestor.batches
    async with hub.bus.subscribe() as events:
        results = await asyncio.gather(*[ingest(hub, raw) for raw in reports])
        got = drain(events)
    assert hub.ingestor.batches - before == 1
    assert [r.customer_id for r in results[:4]] == [jane, jane, bob, jane]
    assert await marks(db, JANE) == (True, f"5.1.1 {USER_UNKNOWN}", 0)
    assert await marks(db, BOB) == (False, None, 1)
    assert await rows(
        db,
        select(Interaction.id, Interaction.delivery_status)
        .where(Interaction.direction == "out")
        .order_by(Interaction.id),
    ) == [(jane_sent, "bounced"), (bob_sent, "sent")]
    assert await rows(
        db, select(OutboxMessage.id, OutboxMessage.status).order_by(OutboxMessage.id)
    ) == [(jane_outbox, "failed"), (bob_outbox, "sent")]
    # One delivery event for Jane's message, however many reports it had.
    assert [e.data["interaction_id"] for e in got if e.kind == "interaction.delivery"] == [
        jane_sent
    ]
    ignored = await rows(
        db,
        select(Interaction.provider_id, Interaction.meta["bounce_ignored"].as_string())
        .where(Interaction.direction == "in")
        .order_by(Interaction.provider_id),
    )
    assert ignored == [
        ("<dsn1@mx>", None),
        ("<dsn2@mx>", None),
        ("<dsn3@mx>", None),
        ("<dsn4@mx>", "recipient not in the original message"),
        ("<dsn5@mx>", "no matching sent message"),
    ]


async def test_sent_messages_of_a_batch_are_looked_up_once(hub: Hub, db: Database) -> None:
    jane = await add_customer(db)
    bob = await add_customer(db, BOB, "Bob")
    jane_sent, _ = await add_sent(db, jane, None, recipient=f"Jane Doe <{JANE}>")
    bob_sent, _ = await add_sent(db, bob, None, provider_id="<out2@crm.example>", recipient=BOB)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    engine = db.write_engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        async with db.write_engine.begin() as conn:
            ctx = BatchContext(conn)
            await ctx.prefetch_sent(
                {("email", OUT1), ("email", "<out2@crm.example>"), ("email", "<nope@x>")}
            )
            prefetched = len(statements)
            assert (await ctx.sent_message("email", OUT1)) == SentMessage(
                jane_sent, CustomerRef(jane, None, None, False), None
            )
            found = await ctx.sent_message("email", "<out2@crm.example>")
            assert found is not None and found.interaction_id == bob_sent
            assert await ctx.sent_message("email", "<nope@x>") is None
            assert len(statements) == prefetched  # answered from the prefetch
            for _ in range(3):  # not prefetched: one query, then the batch's answer
                assert await ctx.sent_message("email", "<other@x>") is None
            assert len(statements) == prefetched + 1
            assert ctx.sent_recipients == {jane_sent: f"Jane Doe <{JANE}>", bob_sent: BOB}
        # What the hub's batch does before routing: the reports' Message-IDs, at once.
        statements.clear()
        async with db.write_engine.begin() as conn:
            ctx = BatchContext(conn)
            reports = [
                parse(dsn(message_id=f"<dsn{i}@mx>", status="5.1.1", diagnostic=USER_UNKNOWN))
                for i in range(3)
            ]
            other = dsn(
                message_id="<dsn9@mx>",
                status="4.2.2",
                diagnostic="452 full",
                original="<out2@crm.example>",
                recipient=BOB,
            )
            await ctx.prefetch_bounced([*reports, parse(other), parse(mail(message_id="<m1@x>"))])
            assert len(statements) == 1
            assert set(ctx.sent) == {("email", OUT1), ("email", "<out2@crm.example>")}
            assert (await ctx.sent_message("email", OUT1)) is not None
            assert len(statements) == 1
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert prefetched == 1
