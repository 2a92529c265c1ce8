"""Email replies: which address, which mailbox, which subject, and what is refused.

Same set-up as test_email_outbound.py (tests/email_outbound_helpers.py).
"""

from __future__ import annotations

import pytest
from sqlalchemy import update

from channels.email.reply_token import reply_address
from hub.outbox.email_reply import reply_subject
from hub.outbox.queue import senders_from
from hub.runtime import Hub
from hub.store.models import Consent, utcnow
from hub.store.tables import identity_t, interaction_t
from tests.support.api import Api
from tests.support.email_outbound import (
    CUSTOMER,
    MAX_BODY,
    SALES,
    SECRET,
    SUPPORT,
    count_rows,
    inbound_email,
    mailbox_config,
    outbox_rows,
    reply_as,
)
from tests.support.hubs import make_settings
from tests.support.smtp_server import SmtpServer

pytestmark = pytest.mark.db


async def test_an_undeliverable_address_is_skipped_and_the_only_one_refused(
    api: Api, hub: Hub, smtp_server: SmtpServer
) -> None:
    customer_id, conv_id = await inbound_email(hub)
    async with hub.db.write() as s:
        conn = await s.connection()
        await conn.execute(
            update(identity_t)
            .where(identity_t.c.value == CUSTOMER)
            .values(undeliverable_at=utcnow(), undeliverable_reason="550 5.1.1 No such user")
        )
    status, err = await reply_as(api, conv_id)
    assert (status, err) == (
        409,
        {
            "error": "conflict",
            "detail": f"the address {CUSTOMER} is undeliverable (550 5.1.1 No such user); "
            "nothing was sent",
        },
    )
    assert await outbox_rows(hub) == []
    assert await count_rows(hub, interaction_t) == 1  # only the customer's mail

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
    status, body = await reply_as(api, conv_id)
    assert (status, body["recipient"]) == (202, "kunde@privat.example")
    assert await hub.dispatcher.run_once() == 1
    assert smtp_server.received[0].rcpt_tos == ["kunde@privat.example"]


async def test_a_marketing_opt_out_does_not_stop_an_agents_answer(
    api: Api, hub: Hub, smtp_server: SmtpServer
) -> None:
    customer_id, conv_id = await inbound_email(hub)
    async with hub.db.write() as s:
        s.add(Consent(customer_id=customer_id, channel="email", state="opted_out", source="link"))
    status, _ = await reply_as(api, conv_id)
    assert status == 202
    assert await hub.dispatcher.run_once() == 1
    [row] = await outbox_rows(hub)
    assert (row.status, len(smtp_server.received)) == ("sent", 1)


async def test_replies_that_cannot_be_sent_are_refused_before_queuing(
    api: Api, hub: Hub, smtp_server: SmtpServer
) -> None:
    _, conv_id = await inbound_email(hub)
    _, sales_conv = await inbound_email(
        hub, "<s1@other.example>", sender="lead@other.example", recipient=SALES, mailbox=None
    )
    assert (await reply_as(api, sales_conv, as_="agent"))[0] == 404  # Sales team's
    assert (await reply_as(api, conv_id, as_="marketing"))[0] == 403
    status, err = await reply_as(api, conv_id, "x" * (MAX_BODY + 1))
    assert (status, err["detail"]) == (
        422,
        f"text: the message has {MAX_BODY + 1} characters; at most {MAX_BODY} can be sent by email",
    )
    status, err = await reply_as(api, conv_id, subject="Hi\r\nBcc: victim@example.net")
    assert (status, [p["field"] for p in err["detail"]]) == (422, ["subject"])
    assert await outbox_rows(hub) == []
    assert await count_rows(hub, interaction_t) == 2
    assert (await reply_as(api, sales_conv, as_="sales_agent"))[0] == 202


async def test_subject_override_and_no_stacked_prefixes(
    api: Api, hub: Hub, smtp_server: SmtpServer
) -> None:
    _, conv_id = await inbound_email(hub)
    status, body = await reply_as(api, conv_id, subject="Ihre Bestellung 4711")
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
    _, by_meta = await inbound_email(hub, "<a@c.example>", sender="a@c.example", mailbox="sales")
    # By the address the customer wrote to (no mailbox recorded), even its token form.
    _, by_address = await inbound_email(
        hub,
        "<b@c.example>",
        sender="b@c.example",
        recipient=f"Vertrieb <{reply_address(SALES, SECRET, 999)}>",
        mailbox=None,
    )
    # No mailbox known at all (an imported conversation): the first that can send.
    _, unknown = await inbound_email(
        hub, "<d@c.example>", sender="d@c.example", recipient="x@else.example", mailbox=None
    )
    # A mailbox that only reads: refused, never answered from another team's address.
    _, read_only = await inbound_email(hub, "<c@c.example>", sender="c@c.example", mailbox="info")
    for conv_id in (by_meta, by_address, unknown):
        assert (await reply_as(api, conv_id, as_="admin"))[0] == 202
    assert await reply_as(api, read_only, as_="admin") == (
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
    assert sorted((r.mailbox, r.status) for r in await outbox_rows(hub)) == [
        ("sales", "sent"),
        ("sales", "sent"),
        ("support", "sent"),
    ]


def test_email_is_sent_only_when_a_mailbox_has_smtp(db_url: str) -> None:
    reading = make_settings(
        db_url,
        email={
            "mailboxes": [mailbox_config("info", "info@example.com", None)],
            "reply_token_secret": SECRET,
        },
    )
    assert senders_from(reading) == {}


async def test_a_mail_without_message_id_is_answered_without_threading_headers(
    api: Api, hub: Hub, smtp_server: SmtpServer
) -> None:
    # parse_message stands in a digest id for a missing Message-ID; no mail
    # client knows it, so it must not be quoted back.
    _, conv_id = await inbound_email(hub, "<sha256:" + "ab" * 32 + "@crmhub.invalid>")
    assert (await reply_as(api, conv_id))[0] == 202
    assert await hub.dispatcher.run_once() == 1
    [received] = smtp_server.received
    msg = received.message
    assert (msg["In-Reply-To"], msg["References"]) == (None, None)
    assert msg["Reply-To"] == reply_address(SUPPORT, SECRET, conv_id)

    # Later in the thread, the real ids still thread the reply; the stand-in never shows.
    await inbound_email(hub, "<m2@customer.example>")
    await inbound_email(hub, "<sha256:" + "cd" * 32 + "@crmhub.invalid>")
    assert (await reply_as(api, conv_id))[0] == 202
    assert await hub.dispatcher.run_once() == 1
    later = smtp_server.received[1].message
    assert later["In-Reply-To"] is None
    assert later["References"].split() == [
        str(msg["Message-ID"]),
        "<m2@customer.example>",
    ]


async def test_a_separate_envelope_sender_takes_the_bounces_not_the_from(
    api: Api, hub: Hub, smtp_server: SmtpServer, bounce_envelope: str
) -> None:
    _, conv_id = await inbound_email(hub)
    assert (await reply_as(api, conv_id))[0] == 202
    assert await hub.dispatcher.run_once() == 1
    [received] = smtp_server.received
    assert (received.mail_from, received.message["From"]) == (bounce_envelope, SUPPORT)
