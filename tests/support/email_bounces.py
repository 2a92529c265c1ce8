"""Shared pieces of the machine mail tests: raw messages as they arrive (mail, DSN),
ingesting them through the hub, a mail we sent as the dispatcher leaves it, and
reading back what the hub stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

from sqlalchemy import select

from channels.base import InboundContact
from channels.email import parse_message
from hub.events.bus import Event, Subscription
from hub.ingest.context import IngestResult
from hub.runtime import Hub
from hub.store.db import Database
from hub.store.models import Conversation, Customer, Identity, Interaction, OutboxMessage

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
JANE = "jane@customer.example"
OUT1 = "<out1@crm.example>"
DAEMON = "MAILER-DAEMON@mx.customer.example"
USER_UNKNOWN = "550 5.1.1 <jane@customer.example>: Recipient address rejected: User unknown"
MAILBOX_FULL = "452 4.2.2 <jane@customer.example>: Mailbox full"


def mail(
    *,
    sender: str = f"Jane Doe <{JANE}>",
    to: str = "support@crm.example",
    subject: str = "About my order",
    message_id: str,
    at: datetime = T0,
    body: str = "Hello, where is my order?",
    headers: dict[str, str] | None = None,
) -> bytes:
    """A plain text mail as it arrives in the mailbox."""
    lines = [
        f"From: {sender}",
        f"To: {to}",
        f"Subject: {subject}",
        f"Date: {format_datetime(at)}",
        f"Message-ID: {message_id}",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
        "MIME-Version: 1.0",
        'Content-Type: text/plain; charset="utf-8"',
        "",
        body,
        "",
    ]
    return "\r\n".join(lines).encode()


def dsn(
    *,
    message_id: str,
    status: str,
    diagnostic: str,
    original: str = OUT1,
    recipient: str = JANE,
    at: datetime = T0,
    final: str | None = None,
    others: tuple[str, ...] = (),
) -> bytes:
    """A Postfix-style delivery status notification (RFC 3464) returning `original`'s headers.

    It reports on `recipient` (delivered to `final` when that is given: a
    forwarder) and then on each of `others`, all with the same status.
    """
    action = "failed" if status.startswith("5") else "delayed"
    groups = "\n".join(
        f"""Final-Recipient: rfc822; {fin}
Original-Recipient: rfc822; {orig}
Action: {action}
Status: {status}
Diagnostic-Code: smtp; {diagnostic}
"""
        for fin, orig in [(final or recipient, recipient), *((o, o) for o in others)]
    )
    return f"""Return-Path: <>
From: Mail Delivery System <{DAEMON}>
To: support@crm.example
Subject: Undelivered Mail Returned to Sender
Date: {format_datetime(at)}
Message-ID: {message_id}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

This is the mail system at host mx.customer.example.
Your message could not be delivered.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.customer.example
Arrival-Date: {format_datetime(at)}

{groups}
--B
Content-Type: text/rfc822-headers

From: Support <support@crm.example>
To: {recipient}
Subject: Your order
Message-ID: {original}

--B--
""".replace("\n", "\r\n").encode()


def parse(raw: bytes) -> InboundContact:
    return parse_message(raw, max_bytes=1_000_000, attachment_store=None)


async def ingest(hub: Hub, raw: bytes) -> IngestResult:
    return await hub.ingestor.ingest(parse(raw))


async def rows(db: Database, stmt: Any) -> list[tuple[Any, ...]]:
    async with db.read() as s:
        return [tuple(r) for r in (await s.exec(stmt)).all()]


async def add_customer(db: Database, email: str = JANE, name: str = "Jane Doe") -> int:
    async with db.write() as s:
        c = Customer(kind="customer", name=name)
        s.add(c)
        await s.flush()
        assert c.id is not None
        s.add(Identity(customer_id=c.id, kind="email", value=email, raw=email, primary=True))
        return c.id


async def add_conversation(
    db: Database,
    customer_id: int,
    *,
    subject: str = "Your order",
    status: str = "open",
    active_at: datetime = T0 - timedelta(days=1),
) -> int:
    async with db.write() as s:
        conv = Conversation(
            customer_id=customer_id,
            channel="email",
            subject=subject,
            status=status,
            last_activity_at=active_at,
        )
        s.add(conv)
        await s.flush()
        assert conv.id is not None
        return conv.id


async def add_sent(
    db: Database,
    customer_id: int,
    conversation_id: int | None,
    *,
    provider_id: str = OUT1,
    recipient: str = JANE,
    at: datetime = T0 - timedelta(days=1),
) -> tuple[int, int]:
    """A mail we sent, as the dispatcher leaves it: interaction "sent" plus its outbox row."""
    async with db.write() as s:
        sent = Interaction(
            customer_id=customer_id,
            conversation_id=conversation_id,
            channel="email",
            direction="out",
            occurred_at=at,
            subject="Your order",
            text="Your order has shipped.",
            provider_id=provider_id,
            sender="support@crm.example",
            recipient=recipient,
            delivery_status="sent",
        )
        s.add(sent)
        await s.flush()
        assert sent.id is not None
        row = OutboxMessage(
            customer_id=customer_id,
            conversation_id=conversation_id,
            interaction_id=sent.id,
            channel="email",
            recipient=recipient,
            body="Your order has shipped.",
            status="sent",
            attempts=1,
            provider_id=provider_id,
            subject="Your order",
        )
        s.add(row)
        await s.flush()
        assert row.id is not None
        return sent.id, row.id


async def marks(db: Database, email: str = JANE) -> tuple[Any, ...]:
    """(marked?, reason, soft bounces) of the email identity."""
    (row,) = await rows(
        db,
        select(
            Identity.undeliverable_at, Identity.undeliverable_reason, Identity.soft_bounces
        ).where(Identity.value == email),
    )
    return (row[0] is not None, row[1], row[2])


def drain(queue: Subscription) -> list[Event]:
    got = []
    while not queue.empty():
        got.append(queue.get_nowait())
    return got
