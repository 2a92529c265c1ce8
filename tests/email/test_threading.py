"""Email replies find their conversation: by In-Reply-To / References, else by reply token.

The subject never decides, and neither does "the open conversation" when the
mail says which message it answers. A reply-token address only counts when
its MAC is valid and the conversation belongs to the sender.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from sqlalchemy import select

from channels.base import InboundContact, MetaKey
from channels.email.reply_token import conversation_of, reply_address
from hub.runtime import Hub
from hub.store.db import Database
from hub.store.models import Conversation, Interaction
from tests.support.email_bounces import (
    OUT1,
    T0,
    add_conversation,
    add_customer,
    add_sent,
    mail,
    parse,
    rows,
)

pytestmark = pytest.mark.db

SECRET = "test-reply-token-secret-0123456789"
BASE = "support@crm.example"


def with_token(contact: InboundContact, secret: str = SECRET) -> InboundContact:
    """What the email adapter adds: the conversation of a validly signed recipient address."""
    meta = dict(contact.metadata)
    addresses = [contact.recipient, *meta.get(MetaKey.TO, []), *meta.get(MetaKey.CC, [])]
    found = conversation_of(addresses, secret)
    if found is not None:
        meta[MetaKey.REPLY_TOKEN_CONVERSATION] = found
    return dataclasses.replace(contact, metadata=meta)


def reply(
    message_id: str, *, to: str = BASE, headers: dict[str, str] | None = None, subject: str = ""
) -> InboundContact:
    return with_token(
        parse(
            mail(
                message_id=message_id,
                to=to,
                subject=subject or "Something else entirely",
                at=T0 + timedelta(hours=1),
                headers=headers,
            )
        )
    )


async def ingest(hub: Hub, contact: InboundContact) -> int | None:
    return (await hub.ingestor.ingest(contact)).conversation_id


async def conversations(db: Database) -> list[tuple[object, ...]]:
    return await rows(
        db,
        select(Conversation.id, Conversation.customer_id, Conversation.status).order_by(
            Conversation.id
        ),
    )


# --- references ---------------------------------------------------------------


@pytest.fixture
async def two_open(db: Database) -> tuple[int, int, int]:
    """Jane with two open email conversations: A holds our mail OUT1, B is the newer one."""
    jane = await add_customer(db)
    a = await add_conversation(db, jane, subject="Your order", active_at=T0 - timedelta(days=2))
    b = await add_conversation(db, jane, subject="Invoice", active_at=T0 - timedelta(days=1))
    await add_sent(db, jane, a, at=T0 - timedelta(days=2))
    return jane, a, b


async def test_in_reply_to_joins_the_answered_conversation_whatever_the_subject(
    hub: Hub, db: Database, two_open: tuple[int, int, int]
) -> None:
    jane, a, b = two_open
    conv = await ingest(hub, reply("<r1@customer.example>", headers={"In-Reply-To": OUT1}))
    assert conv == a  # not B, the most recent open one; the new subject changes nothing
    assert await conversations(db) == [(a, jane, "open"), (b, jane, "open")]
    assert await rows(
        db,
        select(Conversation.last_activity_at, Conversation.subject).where(Conversation.id == a),
    ) == [(T0 + timedelta(hours=1), "Your order")]


async def test_references_alone_are_enough(
    hub: Hub, db: Database, two_open: tuple[int, int, int]
) -> None:
    _, a, _ = two_open
    refs = f"<unknown-root@elsewhere.example> {OUT1}"
    assert await ingest(hub, reply("<r2@customer.example>", headers={"References": refs})) == a


async def test_references_win_over_a_token(
    hub: Hub, db: Database, two_open: tuple[int, int, int]
) -> None:
    _, a, b = two_open
    token_b = reply_address(BASE, SECRET, b)
    contact = reply("<r3@customer.example>", to=token_b, headers={"In-Reply-To": OUT1})
    assert contact.metadata[MetaKey.REPLY_TOKEN_CONVERSATION] == b
    assert await ingest(hub, contact) == a


async def test_unknown_references_fall_back_to_the_open_conversation(
    hub: Hub, db: Database, two_open: tuple[int, int, int]
) -> None:
    _, _, b = two_open
    headers = {"In-Reply-To": "<never-sent@crm.example>"}
    assert await ingest(hub, reply("<r4@customer.example>", headers=headers)) == b


# --- reply tokens -------------------------------------------------------------


@pytest.fixture
async def closed(db: Database) -> tuple[int, int]:
    """Jane with one closed email conversation (so a contact without hints opens a new one)."""
    jane = await add_customer(db)
    conv = await add_conversation(db, jane, status="closed")
    await add_sent(db, jane, conv)
    return jane, conv


async def test_token_joins_when_the_threading_headers_were_stripped(
    hub: Hub, db: Database, closed: tuple[int, int]
) -> None:
    jane, conv = closed
    contact = reply("<r5@customer.example>", to=f"Support <{reply_address(BASE, SECRET, conv)}>")
    assert contact.thread_refs == ()
    assert await ingest(hub, contact) == conv
    # Joining reopens it, as a referenced reply does.
    assert await conversations(db) == [(conv, jane, "open")]


async def test_forged_token_opens_a_new_conversation(
    hub: Hub, db: Database, closed: tuple[int, int]
) -> None:
    jane, conv = closed
    forged = reply_address(BASE, "someone-elses-secret-0123456789", conv)
    contact = reply("<r6@customer.example>", to=forged)
    assert MetaKey.REPLY_TOKEN_CONVERSATION not in contact.metadata  # the MAC does not verify
    new = await ingest(hub, contact)
    assert new not in (None, conv)
    assert await conversations(db) == [(conv, jane, "closed"), (new, jane, "open")]


async def test_token_of_another_customers_conversation_is_not_joined(
    hub: Hub, db: Database, closed: tuple[int, int]
) -> None:
    jane, conv = closed
    bob = await add_customer(db, "bob@other.example", "Bob")
    bobs = await add_conversation(db, bob, status="open")
    contact = reply("<r7@customer.example>", to=reply_address(BASE, SECRET, bobs))
    # validly signed, but not Jane's
    assert contact.metadata[MetaKey.REPLY_TOKEN_CONVERSATION] == bobs
    new = await ingest(hub, contact)
    assert new not in (None, conv, bobs)
    assert await conversations(db) == [
        (conv, jane, "closed"),
        (bobs, bob, "open"),
        (new, jane, "open"),
    ]
    assert (
        await rows(db, select(Interaction.customer_id).where(Interaction.conversation_id == bobs))
        == []
    )


async def test_token_for_a_conversation_on_another_channel_is_not_joined(
    hub: Hub, db: Database, closed: tuple[int, int]
) -> None:
    jane, _ = closed
    async with db.write() as s:
        sms = Conversation(customer_id=jane, channel="sms", subject="", status="open")
        s.add(sms)
        await s.flush()
        sms_id = sms.id
    assert sms_id is not None
    contact = reply("<r8@customer.example>", to=reply_address(BASE, SECRET, sms_id))
    assert await ingest(hub, contact) not in (None, sms_id)
