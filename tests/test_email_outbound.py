"""Agent replies by email end to end: API -> outbox -> dispatcher -> SMTP pool -> real aiosmtpd.

The hub's background dispatcher is not started: each test runs the rounds
itself (`hub.dispatcher.run_once()`), so what was sent when is exact, and a
retry is made due by moving `next_attempt_at` in SQL instead of waiting.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlmodel import col
from sqlmodel import select as sm_select

from channels.base import Channel, InboundContact
from channels.email.reply_token import reply_address
from hub.config import Settings
from hub.db import Database
from hub.email_reply import reply_subject
from hub.models import Consent, Interaction, OutboxMessage, utcnow
from hub.outbox import senders_from
from hub.runtime import Hub
from hub.tables import conversation_t, identity_t, interaction_t, outbox_t
from tests.api_helpers import Api
from tests.conftest import make_settings, manual_dispatch
from tests.smtp_server import SmtpServer, smtp_server

__all__ = ["smtp_server"]
pytestmark = pytest.mark.db

SECRET = "test-reply-token-secret-0123"
SUPPORT = "support@example.com"
SALES = "sales@example.com"
CUSTOMER = "kunde@customer.example"
FIRST_ID = "<m1@customer.example>"
MAX_ATTEMPTS = 3
MAX_BODY = 2000


def _mailbox(name: str, address: str, server: SmtpServer | None) -> dict[str, Any]:
    box: dict[str, Any] = {"name": name, "address": address}
    if server is not None:
        box["smtp"] = {
            "host": server.host,
            "port": server.port,
            "tls": "none",
            "pool_size": 1,
            "timeout": 10.0,
            "local_hostname": "crmhub.test",
            "max_body_chars": MAX_BODY,
        }
    return box


@pytest.fixture
def sales_smtp() -> Iterator[SmtpServer]:
    """A second relay: tests that ask for it get a "sales" mailbox sending through it."""
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def settings(db_url: str, smtp_server: SmtpServer, request: pytest.FixtureRequest) -> Settings:
    mailboxes = [_mailbox("support", SUPPORT, smtp_server)]
    if "sales_smtp" in request.fixturenames:
        sales: SmtpServer = request.getfixturevalue("sales_smtp")
        mailboxes.append(_mailbox("sales", SALES, sales))
        mailboxes.append(_mailbox("info", "info@example.com", None))  # reads only
    return make_settings(
        db_url,
        email={"mailboxes": mailboxes, "reply_token_secret": SECRET},
        outbox={"retry_base_seconds": 30, "max_attempts": MAX_ATTEMPTS},
    )


@pytest.fixture
async def hub(settings: Settings, db: Database) -> AsyncIterator[Hub]:
    async with manual_dispatch(settings) as running:
        yield running


async def _inbound(
    hub: Hub,
    provider_id: str = FIRST_ID,
    *,
    sender: str = f"Kunde <{CUSTOMER}>",
    recipient: str = SUPPORT,
    subject: str = "Lieferung",
    mailbox: str | None = "support",
    refs: tuple[str, ...] = (),
) -> tuple[int, int]:
    meta: dict[str, Any] = {"mailbox": mailbox, "folder": "INBOX", "uid": 1} if mailbox else {}
    result = await hub.ingestor.ingest(
        InboundContact(
            channel=Channel.EMAIL,
            sender=sender,
            recipient=recipient,
            subject=subject,
            text="Wo bleibt meine Bestellung?",
            provider_id=provider_id,
            thread_refs=refs,
            metadata=meta,
        )
    )
    assert result.conversation_id is not None
    return result.customer_id, result.conversation_id


async def _outbox(hub: Hub) -> list[OutboxMessage]:
    async with hub.db.read() as s:
        return list((await s.exec(sm_select(OutboxMessage).order_by(col(OutboxMessage.id)))).all())


async def _interaction(hub: Hub, iid: int) -> Interaction:
    async with hub.db.read() as s:
        found = await s.get(Interaction, iid)
    assert found is not None
    return found


async def _count(hub: Hub, table: Any) -> int:
    async with hub.db.read() as s:
        conn = await s.connection()
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def _make_due(hub: Hub) -> None:
    async with hub.db.write() as s:
        conn = await s.connection()
        await conn.execute(update(outbox_t).values(next_attempt_at=utcnow()))


async def _reply(
    api: Api, conv_id: int, text: str = "Sie ist unterwegs.", as_: str = "agent", **extra: Any
) -> tuple[int, Any]:
    return await api.call(
        "POST", f"/api/v1/conversations/{conv_id}/reply", as_, json={"text": text, **extra}
    )


async def test_reply_is_queued_sent_threaded_and_recorded(
    api: Api, hub: Hub, smtp_server: SmtpServer
) -> None:
    customer_id, conv_id = await _inbound(hub)
    status, body = await _reply(api, conv_id)
    assert status == 202
    message_id = body["provider_id"]
    assert message_id.startswith("<") and message_id.endswith("@example.com>")
    token_address = reply_address(SUPPORT, SECRET, conv_id)
    assert {k: body[k] for k in ("channel", "direction", "subject", "sender", "recipient")} == {
        "channel": "email",
        "direction": "out",
        "subject": "Re: Lieferung",
        "sender": SUPPORT,
        "recipient": CUSTOMER,
    }
    assert body["delivery_status"] == "queued"
    [row] = await _outbox(hub)
    headers = {
        "Message-ID": message_id,
        "Reply-To": token_address,
        "In-Reply-To": FIRST_ID,
        "References": FIRST_ID,
    }
    assert (row.status, row.attempts, row.mailbox, row.subject, row.headers, row.recipient) == (
        "queued",
        0,
        "support",
        "Re: Lieferung",
        headers,
        CUSTOMER,
    )

    assert await hub.dispatcher.run_once() == 1
    [got] = smtp_server.received
    assert (got.mail_from, got.rcpt_tos) == (SUPPORT, [CUSTOMER])
    msg = got.message
    assert {
        k: msg[k]
        for k in ("From", "To", "Subject", "Message-ID", "In-Reply-To", "References", "Reply-To")
    } == {
        "From": SUPPORT,
        "To": CUSTOMER,
        "Subject": "Re: Lieferung",
        "Message-ID": message_id,
        "In-Reply-To": FIRST_ID,
        "References": FIRST_ID,
        "Reply-To": token_address,
    }
    assert parsedate_to_datetime(msg["Date"]).tzinfo is not None
    assert msg.get_content() == "Sie ist unterwegs.\n"

    [row] = await _outbox(hub)
    assert (row.status, row.attempts, row.provider_id, row.last_error) == (
        "sent",
        1,
        message_id,
        None,
    )
    sent = await _interaction(hub, body["id"])
    assert (
        sent.customer_id,
        sent.conversation_id,
        sent.channel,
        sent.direction,
        sent.subject,
        sent.text,
        sent.sender,
        sent.recipient,
        sent.provider_id,
        sent.delivery_status,
        sent.author_id,
        sent.meta,
    ) == (
        customer_id,
        conv_id,
        "email",
        "out",
        "Re: Lieferung",
        "Sie ist unterwegs.",
        SUPPORT,
        CUSTOMER,
        message_id,
        "sent",
        api.user_ids["agent"],
        {"mailbox": "support", "outbox_id": row.id},
    )
    assert await hub.dispatcher.run_once() == 0  # sent once, never again
    assert len(smtp_server.received) == 1
    _, conv = await api.call("GET", f"/api/v1/conversations/{conv_id}", "agent")
    assert [(i["direction"], i["delivery_status"]) for i in conv["interactions"]] == [
        ("in", None),
        ("out", "sent"),
    ]


async def test_an_answer_to_a_reply_not_yet_sent_threads_and_the_next_reply_references_all(
    api: Api, hub: Hub, smtp_server: SmtpServer
) -> None:
    """The Message-ID exists from the moment of queuing: a customer's answer that
    quotes it threads by In-Reply-To even before the dispatcher has run."""
    _, conv_id = await _inbound(hub)
    _, first = await _reply(api, conv_id, "Erste Antwort")
    async with hub.db.write() as s:  # not joinable as "the open conversation"
        conn = await s.connection()
        await conn.execute(update(conversation_t).values(status="closed"))
    _, joined = await _inbound(
        hub, "<m2@customer.example>", subject="Re: Lieferung", refs=(first["provider_id"],)
    )
    assert joined == conv_id
    _, second = await _reply(api, conv_id, "Zweite Antwort")
    assert await hub.dispatcher.run_once() == 2
    sent = {m.message["Message-ID"]: m.message for m in smtp_server.received}
    assert set(sent) == {first["provider_id"], second["provider_id"]}
    answer = sent[second["provider_id"]]
    assert answer["In-Reply-To"] == "<m2@customer.example>"
    assert answer["References"].split() == [
        FIRST_ID,
        first["provider_id"],
        "<m2@customer.example>",
    ]
    assert answer["Subject"] == "Re: Lieferung"


async def test_references_of_a_long_thread_keep_the_root_and_the_newest(
    api: Api, hub: Hub, smtp_server: SmtpServer
) -> None:
    thread: list[str] = []
    for n in range(12):  # the customer and the agent take turns
        message_id = f"<m{n}@customer.example>"
        _, conv_id = await _inbound(hub, message_id, refs=tuple(thread))
        thread.append(message_id)
        if n < 11:
            thread.append((await _reply(api, conv_id))[1]["provider_id"])
    _, last = await _reply(api, conv_id)
    await hub.dispatcher.run_once()
    [msg] = [
        r.message for r in smtp_server.received if r.message["Message-ID"] == last["provider_id"]
    ]
    assert len(thread) == 23
    assert msg["In-Reply-To"] == thread[-1]
    assert msg["References"].split() == [thread[0], *thread[-19:]]


async def test_4xx_is_retried_later_with_the_same_message_id(
    api: Api, hub: Hub, smtp_server: SmtpServer
) -> None:
    _, conv_id = await _inbound(hub)
    smtp_server.handler.answer_data("451 4.3.0 Try again later")
    _, body = await _reply(api, conv_id)
    assert await hub.dispatcher.run_once() == 1
    [row] = await _outbox(hub)
    assert (row.status, row.attempts, row.last_error) == (
        "queued",
        1,
        "451: 4.3.0 Try again later",
    )
    assert row.next_attempt_at > utcnow()
    assert (await _interaction(hub, body["id"])).delivery_status == "queued"
    assert smtp_server.received == []
    assert await hub.dispatcher.run_once() == 0  # backing off: not due yet

    await _make_due(hub)
    assert await hub.dispatcher.run_once() == 1
    [got] = smtp_server.received
    assert got.message["Message-ID"] == body["provider_id"]
    [row] = await _outbox(hub)
    assert (row.status, row.attempts, row.provider_id, row.last_error) == (
        "sent",
        2,
        body["provider_id"],
        None,
    )
    assert (await _interaction(hub, body["id"])).delivery_status == "sent"
    await _make_due(hub)
    assert await hub.dispatcher.run_once() == 0
    assert len(smtp_server.received) == 1


@pytest.mark.parametrize(
    ("misbehave", "code", "error"),
    [
        ("data", "554", "554: 5.7.1 Rejected as spam"),
        ("rcpt", "550", "550: 5.1.1 No such user"),
    ],
)
async def test_5xx_fails_at_once_with_the_code_on_the_interaction(
    api: Api, hub: Hub, smtp_server: SmtpServer, misbehave: str, code: str, error: str
) -> None:
    _, conv_id = await _inbound(hub)
    if misbehave == "data":
        smtp_server.handler.answer_data("554 5.7.1 Rejected as spam")
    else:
        smtp_server.handler.refuse[CUSTOMER] = "550 5.1.1 No such user"
    _, body = await _reply(api, conv_id)
    assert await hub.dispatcher.run_once() == 1
    [row] = await _outbox(hub)
    assert (row.status, row.attempts, row.last_error, row.provider_id) == (
        "failed",
        1,
        error,
        None,
    )
    failed = await _interaction(hub, body["id"])
    assert (failed.delivery_status, failed.provider_id, failed.meta) == (
        "failed",
        body["provider_id"],
        {"mailbox": "support", "outbox_id": row.id, "error_code": code, "error": error},
    )
    await _make_due(hub)
    assert await hub.dispatcher.run_once() == 0  # permanent: never retried
    assert smtp_server.received == []


async def test_an_undeliverable_address_is_skipped_and_the_only_one_refused(
    api: Api, hub: Hub, smtp_server: SmtpServer
) -> None:
    customer_id, conv_id = await _inbound(hub)
    async with hub.db.write() as s:
        conn = await s.connection()
        await conn.execute(
            update(identity_t)
            .where(identity_t.c.value == CUSTOMER)
            .values(undeliverable_at=utcnow(), undeliverable_reason="550 5.1.1 No such user")
        )
    status, err = await _reply(api, conv_id)
    assert (status, err) == (
        409,
        {
            "error": "conflict",
            "detail": f"the address {CUSTOMER} is undeliverable (550 5.1.1 No such user); "
            "nothing was sent",
        },
    )
    assert await _outbox(hub) == []
    assert await _count(hub, interaction_t) == 1  # only the customer's mail

    # A second, deliverable address of the customer is used instead.
    async with hub.db.write() as s:
        conn = await s.connection()
        await conn.execute(
            identity_t.insert().values(
                customer_id=customer_id,
                kind="email",
                value="kunde@privat.example",
                raw="kunde@privat.example",
                primary=False,
                verified=True,
                soft_bounces=0,
                created_at=utcnow(),
            )
        )
    status, body = await _reply(api, conv_id)
    assert (status, body["recipient"]) == (202, "kunde@privat.example")
    assert await hub.dispatcher.run_once() == 1
    assert smtp_server.received[0].rcpt_tos == ["kunde@privat.example"]


async def test_a_marketing_opt_out_does_not_stop_an_agents_answer(
    api: Api, hub: Hub, smtp_server: SmtpServer
) -> None:
    customer_id, conv_id = await _inbound(hub)
    async with hub.db.write() as s:
        s.add(Consent(customer_id=customer_id, channel="email", state="opted_out", source="link"))
    status, _ = await _reply(api, conv_id)
    assert status == 202
    assert await hub.dispatcher.run_once() == 1
    [row] = await _outbox(hub)
    assert (row.status, len(smtp_server.received)) == ("sent", 1)


async def test_replies_that_cannot_be_sent_are_refused_before_queuing(
    api: Api, hub: Hub, smtp_server: SmtpServer
) -> None:
    _, conv_id = await _inbound(hub)
    _, sales_conv = await _inbound(
        hub, "<s1@other.example>", sender="lead@other.example", recipient=SALES, mailbox=None
    )
    assert (await _reply(api, sales_conv, as_="agent"))[0] == 404  # Sales team's
    assert (await _reply(api, conv_id, as_="marketing"))[0] == 403
    status, err = await _reply(api, conv_id, "x" * (MAX_BODY + 1))
    assert (status, err["detail"]) == (
        422,
        f"text: the message has {MAX_BODY + 1} characters; at most {MAX_BODY} can be sent by email",
    )
    status, err = await _reply(api, conv_id, subject="Hi\r\nBcc: victim@example.net")
    assert (status, [p["field"] for p in err["detail"]]) == (422, ["subject"])
    assert await _outbox(hub) == []
    assert await _count(hub, interaction_t) == 2
    assert (await _reply(api, sales_conv, as_="sales_agent"))[0] == 202


async def test_subject_override_and_no_stacked_prefixes(
    api: Api, hub: Hub, smtp_server: SmtpServer
) -> None:
    _, conv_id = await _inbound(hub)
    status, body = await _reply(api, conv_id, subject="Ihre Bestellung 4711")
    assert (status, body["subject"]) == (202, "Ihre Bestellung 4711")
    await hub.dispatcher.run_once()
    assert smtp_server.received[0].message["Subject"] == "Ihre Bestellung 4711"
    assert reply_subject("Re: AW: RE[2]: Lieferung") == "Re: Lieferung"
    assert reply_subject("Fwd: Lieferung") == "Re: Fwd: Lieferung"
    assert reply_subject("") == "Re:"


async def test_the_reply_leaves_through_the_mailbox_the_conversation_came_in_on(
    api: Api, hub: Hub, smtp_server: SmtpServer, sales_smtp: SmtpServer
) -> None:
    # By the mailbox named in the inbound mail's metadata (IMAP), whatever its To.
    _, by_meta = await _inbound(hub, "<a@c.example>", sender="a@c.example", mailbox="sales")
    # By the address the customer wrote to (no mailbox recorded), even its token form.
    _, by_address = await _inbound(
        hub,
        "<b@c.example>",
        sender="b@c.example",
        recipient=f"Vertrieb <{reply_address(SALES, SECRET, 999)}>",
        mailbox=None,
    )
    # No mailbox known at all (an imported conversation): the first that can send.
    _, unknown = await _inbound(
        hub, "<d@c.example>", sender="d@c.example", recipient="x@else.example", mailbox=None
    )
    # A mailbox that only reads: refused, never answered from another team's address.
    _, read_only = await _inbound(hub, "<c@c.example>", sender="c@c.example", mailbox="info")
    for conv_id in (by_meta, by_address, unknown):
        assert (await _reply(api, conv_id, as_="admin"))[0] == 202
    assert await _reply(api, read_only, as_="admin") == (
        422,
        {
            "error": "invalid",
            "detail": "the conversation came in on mailbox 'info', which cannot send "
            "(no smtp configured); nothing was sent",
        },
    )
    assert await hub.dispatcher.run_once() == 3
    assert sorted((r.mail_from, r.rcpt_tos[0]) for r in sales_smtp.received) == [
        (SALES, "a@c.example"),
        (SALES, "b@c.example"),
    ]
    assert [(r.mail_from, r.rcpt_tos) for r in smtp_server.received] == [(SUPPORT, ["d@c.example"])]
    by_rcpt = {r.rcpt_tos[0]: r.message for r in [*sales_smtp.received, *smtp_server.received]}
    assert (by_rcpt["a@c.example"]["From"], by_rcpt["a@c.example"]["Reply-To"]) == (
        SALES,
        reply_address(SALES, SECRET, by_meta),
    )
    assert by_rcpt["d@c.example"]["Reply-To"] == reply_address(SUPPORT, SECRET, unknown)
    assert sorted((r.mailbox, r.status) for r in await _outbox(hub)) == [
        ("sales", "sent"),
        ("sales", "sent"),
        ("support", "sent"),
    ]


def test_email_is_sent_only_when_a_mailbox_has_smtp(db_url: str) -> None:
    reading = make_settings(
        db_url,
        email={
            "mailboxes": [_mailbox("info", "info@example.com", None)],
            "reply_token_secret": SECRET,
        },
    )
    assert senders_from(reading) == {}


async def test_a_mail_without_message_id_is_answered_without_threading_headers(
    api: Api, hub: Hub, smtp_server: SmtpServer
) -> None:
    # parse_message stands in a digest id for a missing Message-ID; no mail
    # client knows it, so it must not be quoted back.
    _, conv_id = await _inbound(hub, "<sha256:" + "ab" * 32 + "@crmhub.invalid>")
    assert (await _reply(api, conv_id))[0] == 202
    assert await hub.dispatcher.run_once() == 1
    [received] = smtp_server.received
    msg = received.message
    assert (msg["In-Reply-To"], msg["References"]) == (None, None)
    assert msg["Reply-To"] == reply_address(SUPPORT, SECRET, conv_id)
