"""Agent replies by email end to end: API -> outbox -> dispatcher -> SMTP pool -> real aiosmtpd.

The hub's background dispatcher is not started: each test runs the rounds
itself (`hub.dispatcher.run_once()`), so what was sent when is exact, and a
retry is made due by moving `next_attempt_at` in SQL instead of waiting.
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime

import pytest
from sqlalchemy import update

from channels.email.reply_token import reply_address
from hub.runtime import Hub
from hub.store.models import utcnow
from hub.store.tables import conversation_t
from tests.support.api import Api
from tests.support.email_outbound import (
    CUSTOMER,
    FIRST_ID,
    SECRET,
    SUPPORT,
    inbound_email,
    interaction_row,
    make_due,
    outbox_rows,
    reply_as,
)
from tests.support.smtp_server import SmtpServer

pytestmark = pytest.mark.db


async def test_reply_is_queued_sent_threaded_and_recorded(
    api: Api, hub: Hub, smtp_server: SmtpServer
) -> None:
    customer_id, conv_id = await inbound_email(hub)
    status, body = await reply_as(api, conv_id)
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
    [row] = await outbox_rows(hub)
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

    [row] = await outbox_rows(hub)
    assert (row.status, row.attempts, row.provider_id, row.last_error) == (
        "sent",
        1,
        message_id,
        None,
    )
    sent = await interaction_row(hub, body["id"])
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
    _, conv_id = await inbound_email(hub)
    _, first = await reply_as(api, conv_id, "Erste Antwort")
    async with hub.db.write() as s:  # not joinable as "the open conversation"
        conn = await s.connection()
        await conn.execute(update(conversation_t).values(status="closed"))
    _, joined = await inbound_email(
        hub, "<m2@customer.example>", subject="Re: Lieferung", refs=(first["provider_id"],)
    )
    assert joined == conv_id
    _, second = await reply_as(api, conv_id, "Zweite Antwort")
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
        _, conv_id = await inbound_email(hub, message_id, refs=tuple(thread))
        thread.append(message_id)
        if n < 11:
            thread.append((await reply_as(api, conv_id))[1]["provider_id"])
    _, last = await reply_as(api, conv_id)
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
    _, conv_id = await inbound_email(hub)
    smtp_server.handler.answer_data("451 4.3.0 Try again later")
    _, body = await reply_as(api, conv_id)
    assert await hub.dispatcher.run_once() == 1
    [row] = await outbox_rows(hub)
    assert (row.status, row.attempts, row.last_error) == (
        "queued",
        1,
        "451: 4.3.0 Try again later",
    )
    assert row.next_attempt_at > utcnow()
    assert (await interaction_row(hub, body["id"])).delivery_status == "queued"
    assert smtp_server.received == []
    assert await hub.dispatcher.run_once() == 0  # backing off: not due yet

    await make_due(hub)
    assert await hub.dispatcher.run_once() == 1
    [got] = smtp_server.received
    assert got.message["Message-ID"] == body["provider_id"]
    [row] = await outbox_rows(hub)
    assert (row.status, row.attempts, row.provider_id, row.last_error) == (
        "sent",
        2,
        body["provider_id"],
        None,
    )
    assert (await interaction_row(hub, body["id"])).delivery_status == "sent"
    await make_due(hub)
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
    _, conv_id = await inbound_email(hub)
    if misbehave == "data":
        smtp_server.handler.answer_data("554 5.7.1 Rejected as spam")
    else:
        smtp_server.handler.refuse[CUSTOMER] = "550 5.1.1 No such user"
    _, body = await reply_as(api, conv_id)
    assert await hub.dispatcher.run_once() == 1
    [row] = await outbox_rows(hub)
    assert (row.status, row.attempts, row.last_error, row.provider_id) == (
        "failed",
        1,
        error,
        None,
    )
    failed = await interaction_row(hub, body["id"])
    assert (failed.delivery_status, failed.provider_id, failed.meta) == (
        "failed",
        body["provider_id"],
        {"mailbox": "support", "outbox_id": row.id, "error_code": code, "error": error},
    )
    await make_due(hub)
    assert await hub.dispatcher.run_once() == 0  # permanent: never retried
    assert smtp_server.received == []
