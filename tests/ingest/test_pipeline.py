"""The inbound pipeline: identity match, leads, threading, idempotency, group commit."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from channels.base import AttachmentRef, Channel, InboundContact, MetaKey
from hub.config import Settings
from hub.ingest.pipeline import IngestError
from hub.runtime import Hub
from hub.store.db import Database
from hub.store.models import (
    Attachment,
    Consent,
    Conversation,
    Customer,
    Identity,
    Interaction,
    Team,
)
from routing.base import Decision, DecisionKey, RoutingContext
from tests.support.hubs import hub_with_step

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def sms(sender: str, sid: str | None, text: str = "hi", **kw: object) -> InboundContact:
    return InboundContact(Channel.SMS, sender, text=text, provider_id=sid, **kw)  # type: ignore[arg-type]


async def rows(db: Database, stmt: object) -> list[tuple[object, ...]]:
    async with db.read() as s:
        return [tuple(r) for r in (await s.exec(stmt)).all()]


async def test_unknown_sender_becomes_lead_of_recipient_team(hub: Hub, db: Database) -> None:
    r1 = await hub.ingestor.ingest(
        InboundContact(
            Channel.EMAIL,
            "Alice Example <ALICE@Example.ORG>",
            recipient="Sales <sales@example.com>",
            subject="Offer",
            text="Please call me",
            provider_id="<m1@example.org>",
            occurred_at=T0,
        )
    )
    r2 = await hub.ingestor.ingest(sms("+49 171 5550001", "SM1", occurred_at=T0))
    assert r1.created_customer and r2.created_customer and not r1.duplicate
    teams = dict(await rows(db, select(Team.name, Team.id)))
    assert await rows(
        db,
        select(
            Customer.id, Customer.kind, Customer.name, Customer.team_id, Customer.last_inbound_at
        ).order_by(Customer.id),
    ) == [
        (r1.customer_id, "lead", "Alice Example", teams["Sales"], T0),
        (r2.customer_id, "lead", "", teams["Support"], T0),
    ]
    assert await rows(
        db,
        select(Identity.customer_id, Identity.kind, Identity.value, Identity.raw).order_by(
            Identity.id
        ),
    ) == [
        (r1.customer_id, "email", "alice@example.org", "Alice Example <ALICE@Example.ORG>"),
        (r2.customer_id, "phone", "+491715550001", "+49 171 5550001"),
    ]
    assert await rows(
        db,
        select(
            Conversation.id, Conversation.customer_id, Conversation.channel, Conversation.subject
        ).order_by(Conversation.id),
    ) == [
        (r1.conversation_id, r1.customer_id, "email", "Offer"),
        (r2.conversation_id, r2.customer_id, "sms", ""),
    ]


async def test_other_forms_of_an_identity_match_the_same_customer(hub: Hub, db: Database) -> None:
    first = await hub.ingestor.ingest(sms("030 1234567", "SM1", occurred_at=T0))
    forms = ["+49 30 1234567", "0049 (0)30-1234567", "+49301234567"]
    later = [
        await hub.ingestor.ingest(sms(f, f"SM{i + 2}", occurred_at=T0 + timedelta(minutes=i + 1)))
        for i, f in enumerate(forms)
    ]
    assert {r.customer_id for r in later} == {first.customer_id}
    assert {r.conversation_id for r in later} == {first.conversation_id}
    assert not any(r.created_customer for r in later)
    assert await rows(db, select(Customer.id, Customer.last_inbound_at)) == [
        (first.customer_id, T0 + timedelta(minutes=3))
    ]


async def test_closed_conversation_is_not_reused(hub: Hub, db: Database) -> None:
    first = await hub.ingestor.ingest(sms("+491715550002", "SM1"))
    async with db.write() as s:
        await s.exec(update(Conversation).values(status="closed"))
    second = await hub.ingestor.ingest(sms("+491715550002", "SM2"))
    assert second.customer_id == first.customer_id
    assert second.conversation_id != first.conversation_id
    assert await rows(
        db, select(Conversation.id, Conversation.status).order_by(Conversation.id)
    ) == [
        (first.conversation_id, "closed"),
        (second.conversation_id, "open"),
    ]


async def test_reply_threads_into_referenced_conversation(hub: Hub, db: Database) -> None:
    a = await hub.ingestor.ingest(
        InboundContact(Channel.EMAIL, "bob@example.org", subject="A", provider_id="<a@x>")
    )
    async with db.write() as s:  # the customer now has a second open email conversation
        s.add(
            Conversation(
                customer_id=a.customer_id,
                channel="email",
                subject="B",
                last_activity_at=datetime.now(UTC) + timedelta(hours=1),
            )
        )
    reply = await hub.ingestor.ingest(
        InboundContact(
            Channel.EMAIL,
            "bob@example.org",
            subject="Re: A (changed)",
            provider_id="<r@x>",
            thread_refs=("<a@x>",),
        )
    )
    assert reply.conversation_id == a.conversation_id


async def test_concurrent_duplicates_store_one_interaction_with_one_answer(
    hub: Hub, db: Database
) -> None:
    contact = sms("+491715550003", "SMdup")
    results = await asyncio.gather(*[hub.ingestor.ingest(contact) for _ in range(10)])
    assert {(r.interaction_id, r.customer_id, r.conversation_id) for r in results} == {
        (results[0].interaction_id, results[0].customer_id, results[0].conversation_id)
    }
    assert [r.duplicate for r in results] == [False] + [True] * 9
    again = await hub.ingestor.ingest(contact)  # a provider retry, in a later batch
    assert (again.interaction_id, again.duplicate) == (results[0].interaction_id, True)
    assert await rows(db, select(Interaction.provider_id)) == [("SMdup",)]
    assert len(await rows(db, select(Customer.id))) == 1


async def test_same_provider_id_on_another_channel_is_distinct(hub: Hub, db: Database) -> None:
    a = await hub.ingestor.ingest(sms("+491715550004", "X1"))
    b = await hub.ingestor.ingest(InboundContact(Channel.EMAIL, "c@example.org", provider_id="X1"))
    assert a.interaction_id != b.interaction_id and not b.duplicate


async def test_group_commit_shares_one_transaction(hub: Hub, db: Database) -> None:
    before = hub.ingestor.batches
    results = await asyncio.gather(
        *[hub.ingestor.ingest(sms(f"+4917155510{i:02d}", f"SMg{i}")) for i in range(50)]
    )
    assert hub.ingestor.batches - before == 1
    assert len({r.interaction_id for r in results}) == 50
    assert len(await rows(db, select(Interaction.id))) == 50


async def test_bad_input_fails_alone_in_its_batch(hub: Hub, db: Database) -> None:
    good = [sms(f"+4917155520{i:02d}", f"SMb{i}") for i in range(5)]
    bad = [sms("no digits here", "SMbad"), sms("+4917155529999", "x" * 501)]
    results = await asyncio.gather(
        *[hub.ingestor.ingest(c) for c in [*good[:2], *bad, *good[2:]]], return_exceptions=True
    )
    assert [type(r).__name__ for r in results] == [
        "IngestResult",
        "IngestResult",
        "IngestError",
        "IngestError",
        "IngestResult",
        "IngestResult",
        "IngestResult",
    ]
    assert str(results[2]) == "sender: no digits in phone number 'no digits here'"
    assert str(results[3]) == "provider id must be 1 to 500 characters"
    assert sorted(r[0] for r in await rows(db, select(Interaction.provider_id))) == [
        f"SMb{i}" for i in range(5)
    ]


@pytest.mark.usefixtures("poison_trigger")
async def test_database_refusal_fails_one_item_and_leaves_nothing_half_stored(
    hub: Hub, db: Database
) -> None:
    contacts = [sms(f"+4917155530{i:02d}", f"SMp{i}") for i in range(4)]
    contacts.insert(2, sms("+4917155539999", "SMpoison", subject="poison"))
    results = await asyncio.gather(
        *[hub.ingestor.ingest(c) for c in contacts], return_exceptions=True
    )
    assert isinstance(results[2], IngestError)
    assert [isinstance(r, IngestError) for r in results] == [False, False, True, False, False]
    assert sorted(r[0] for r in await rows(db, select(Interaction.provider_id))) == [
        f"SMp{i}" for i in range(4)
    ]
    # The poisoned contact's sender did not become a lead without its interaction.
    assert await rows(db, select(Identity.id).where(Identity.value == "+4917155539999")) == []


async def test_routing_failure_fails_only_that_contact(settings: object, db: Database) -> None:
    class Explode:
        name = "explode"
        description = "fails for one sender"

        async def process(
            self, contact: InboundContact, decision: Decision, ctx: RoutingContext
        ) -> None:
            if contact.text == "boom":
                raise RuntimeError("boom")

    from hub.config import Settings

    assert isinstance(settings, Settings)
    async with hub_with_step(settings, Explode) as running:
        results = await asyncio.gather(
            running.ingestor.ingest(sms("+491715554001", "SMr1")),
            running.ingestor.ingest(sms("+491715554002", "SMr2", text="boom")),
            return_exceptions=True,
        )
    assert not isinstance(results[0], Exception)
    assert isinstance(results[1], IngestError)
    assert await rows(db, select(Interaction.provider_id)) == [("SMr1",)]
    assert await rows(db, select(Identity.value)) == [("+491715554001",)]


async def test_attachments_and_metadata_are_stored(hub: Hub, db: Database) -> None:
    r = await hub.ingestor.ingest(
        sms(
            "+491715555001",
            "MM1",
            metadata={"NumMedia": "1"},
            attachments=(AttachmentRef("cat.jpg", "image/jpeg", url="https://media.example/1"),),
        )
    )
    assert await rows(db, select(Interaction.meta)) == [({"NumMedia": "1"},)]
    assert await rows(
        db, select(Attachment.interaction_id, Attachment.filename, Attachment.url)
    ) == [(r.interaction_id, "cat.jpg", "https://media.example/1")]


async def test_event_is_published_after_commit(hub: Hub, db: Database) -> None:
    async with hub.bus.subscribe() as events:
        r = await hub.ingestor.ingest(sms("+491715556001", "SMe1"))
        dup = await hub.ingestor.ingest(sms("+491715556001", "SMe1"))
        event = events.get_nowait()
        assert events.empty()  # the duplicate published nothing
    assert dup.duplicate
    assert event.kind == "interaction.created"
    assert event.data["interaction_id"] == r.interaction_id
    assert event.data["sender"] == "+491715556001"
    assert event.team_id == r.team_id


async def test_unknown_routing_step_fails_at_start(settings: object) -> None:
    from hub.config import Settings
    from routing.registry import UnknownStep

    assert isinstance(settings, Settings)
    s = settings.model_copy(
        update={
            "routing": settings.routing.model_copy(
                update={
                    "pipelines": settings.routing.pipelines.model_copy(update={"sms": ["nope"]})
                }
            )
        }
    )
    with pytest.raises(UnknownStep, match="unknown routing step 'nope'"):
        Hub(s)


async def test_consent_and_reply_are_stored_and_repeated_for_duplicates(
    settings: object, db: Database
) -> None:
    from hub.config import Settings
    from routing.base import ConsentChange

    class OptOut:
        name = "opt_out"
        description = "STOP opts out and answers"

        async def process(
            self, contact: InboundContact, decision: Decision, ctx: RoutingContext
        ) -> None:
            if contact.text.strip().upper() == "STOP":
                decision.consent = ConsentChange("sms", "opted_out", "sms keyword STOP")
                decision.reply = "You will get no more messages."
                decision.meta[DecisionKey.KEYWORD] = "STOP"

    assert isinstance(settings, Settings)
    at = datetime(2026, 10, 1, 12, tzinfo=UTC)
    async with hub_with_step(settings, OptOut) as running:
        stop = sms("+491715557001", "SMstop", text=" stop ", occurred_at=at)
        first = await running.ingestor.ingest(stop)
        again = await running.ingestor.ingest(stop)
        plain = await running.ingestor.ingest(sms("+491715557001", "SMhi", text="hi"))
    assert (first.reply, again.reply, again.duplicate, plain.reply) == (
        "You will get no more messages.",
        "You will get no more messages.",
        True,
        None,
    )
    assert await rows(
        db,
        select(
            Consent.customer_id,
            Consent.channel,
            Consent.purpose,
            Consent.state,
            Consent.source,
            Consent.recorded_at,
        ),
    ) == [(first.customer_id, "sms", "marketing", "opted_out", "sms keyword STOP", at)]
    assert await rows(db, select(Interaction.meta).order_by(Interaction.id)) == [
        ({"keyword": "STOP", "reply": "You will get no more messages."},),
        ({},),
    ]


async def test_a_reference_to_another_customers_message_opens_a_new_conversation(
    hub: Hub, db: Database
) -> None:
    a = await hub.ingestor.ingest(
        InboundContact(
            Channel.EMAIL, "a@example.org", text="A's private text", provider_id="<a1@x>"
        )
    )
    # Someone else quotes A's Message-ID (a forwarded mail, or a guess).
    b = await hub.ingestor.ingest(
        InboundContact(
            Channel.EMAIL,
            "b@example.org",
            recipient="sales@example.com",
            text="B's text",
            provider_id="<b1@x>",
            thread_refs=("<a1@x>",),
        )
    )
    assert b.customer_id != a.customer_id
    assert b.conversation_id not in (None, a.conversation_id)
    assert await rows(
        db,
        select(Interaction.customer_id, Conversation.customer_id)
        .join(Conversation, Conversation.id == Interaction.conversation_id)
        .order_by(Interaction.id),
    ) == [(a.customer_id, a.customer_id), (b.customer_id, b.customer_id)]


async def test_machine_mail_is_history_only(settings: Settings, db: Database) -> None:
    from routing.mail_steps import EmailAutoreply

    ooo = InboundContact(
        Channel.EMAIL,
        "bob@example.org",
        subject="Out of office",
        text="Back on Monday",
        provider_id="<ooo@x>",
        metadata={MetaKey.AUTO_SUBMITTED: "auto-replied"},
    )
    async with hub_with_step(settings, EmailAutoreply) as running:
        result = await running.ingestor.ingest(ooo)
        normal = await running.ingestor.ingest(
            InboundContact(
                Channel.EMAIL, "bob@example.org", text="Real answer", provider_id="<r@x>"
            )
        )
    assert (result.conversation_id, result.created_customer) == (None, True)
    assert normal.conversation_id is not None
    assert await rows(
        db, select(Interaction.conversation_id, Interaction.meta).order_by(Interaction.id)
    ) == [
        (None, {"auto_submitted": "auto-replied", "auto_reply": "auto-submitted: auto-replied"}),
        (normal.conversation_id, {}),
    ]
    assert len(await rows(db, select(Conversation.id))) == 1
