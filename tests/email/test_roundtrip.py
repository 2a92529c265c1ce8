"""Email end to end with both real servers: a customer writes (Dovecot), an agent
answers (API -> outbox -> aiosmtpd), the customer's answer and the relay's bounce
come back through IMAP and land where they belong."""

from __future__ import annotations

from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from channels.email.imap_sync import MailboxSync
from hub.config import Settings
from hub.mail.store import MailStore
from hub.runtime import Hub
from hub.store.db import Database
from hub.store.tables import conversation_t, customer_t, identity_t, interaction_t
from tests.support.api import Api
from tests.support.dovecot import ImapServer, append
from tests.support.hubs import manual_dispatch
from tests.support.mail import PASSWORD_ENV, mail_settings, message, new_user
from tests.support.smtp_server import SmtpServer

pytestmark = pytest.mark.db

CUSTOMER = "kundin@example.org"


@pytest.fixture
def user() -> str:
    return new_user()


@pytest.fixture
def settings(
    db_url: str,
    dovecot: ImapServer,
    smtp_server: SmtpServer,
    user: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Settings:
    monkeypatch.setenv(PASSWORD_ENV, dovecot.password)
    smtp = {"host": smtp_server.host, "port": smtp_server.port, "tls": "none", "pool_size": 1}
    return mail_settings(db_url, dovecot, user, tmp_path, smtp=smtp)


@pytest.fixture
async def hub(settings: Settings, db: Database) -> AsyncIterator[Hub]:
    async with manual_dispatch(settings) as running:
        yield running


async def _read_mailbox(hub: Hub) -> int:
    mailbox = hub.settings.email.mailboxes[0]
    assert mailbox.imap is not None
    store = MailStore(hub.db, hub.ingestor, mailbox, hub.settings.email, hub.attachments)
    sync = MailboxSync(
        mailbox.name, mailbox.imap, mailbox.imap.password(), store.checkpoint, store.store
    )
    try:
        return await sync.sync_once()
    finally:
        await sync.stop()


async def _rows(hub: Hub, query: Any) -> list[Any]:
    async with hub.db.read() as s:
        conn = await s.connection()
        return list((await conn.execute(query)).all())


async def _first_contact_and_reply(
    hub: Hub, api: Api, dovecot: ImapServer, smtp: SmtpServer, user: str
) -> tuple[int, EmailMessage]:
    append(dovecot, user, "INBOX", message(1, sender=f"Kundin <{CUSTOMER}>"))
    assert await _read_mailbox(hub) == 1
    [(conv_id,)] = await _rows(hub, select(conversation_t.c.id))
    status, body = await api.call(
        "POST",
        f"/api/v1/conversations/{conv_id}/reply",
        "agent",
        json={"text": "Ihre Bestellung ist unterwegs."},
    )
    assert status == 202, body
    assert await hub.dispatcher.run_once() == 1
    [sent] = smtp.received
    return conv_id, sent.message


async def test_an_answer_with_stripped_headers_finds_its_conversation_by_token(
    hub: Hub,
    api: Api,
    dovecot: ImapServer,
    smtp_server: SmtpServer,
    user: str,
) -> None:
    conv_id, sent = await _first_contact_and_reply(hub, api, dovecot, smtp_server, user)
    token_address = str(sent["Reply-To"])
    assert token_address.startswith("support+c") and token_address.endswith("@example.com")
    # The agent closed the conversation; the customer answers from a client that
    # drops In-Reply-To/References and changes the subject.
    async with hub.db.write() as s:
        conn = await s.connection()
        await conn.execute(
            update(conversation_t).where(conversation_t.c.id == conv_id).values(status="closed")
        )
    answer = message(2, sender=CUSTOMER, To=token_address, Subject="Danke!")
    stranger = message(3, sender=CUSTOMER, Subject="Neue Frage")  # no token: a new one
    append(dovecot, user, "INBOX", answer, stranger)
    assert await _read_mailbox(hub) == 2
    rows = await _rows(
        hub,
        select(
            interaction_t.c.provider_id, interaction_t.c.direction, interaction_t.c.conversation_id
        ).order_by(interaction_t.c.id),
    )
    [(new_conv,)] = await _rows(
        hub, select(conversation_t.c.id).where(conversation_t.c.id != conv_id)
    )
    assert rows == [
        ("<m1@example.org>", "in", conv_id),
        (str(sent["Message-ID"]), "out", conv_id),
        ("<m2@example.org>", "in", conv_id),
        ("<m3@example.org>", "in", new_conv),
    ]


def _bounce_of(sent: EmailMessage) -> bytes:
    return (
        "Return-Path: <>\r\n"
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.org>\r\n"
        "To: support@example.com\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Date: Thu, 26 Nov 2026 11:00:00 +0100\r\n"
        "Message-ID: <bounce-1@mx.example.org>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
        "\r\n--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.org\r\n\r\n"
        f"Final-Recipient: rfc822; {CUSTOMER}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n"
        "\r\n--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: support@example.com\r\nTo: {CUSTOMER}\r\nSubject: {sent['Subject']}\r\n"
        f"Message-ID: {sent['Message-ID']}\r\n"
        "\r\n--B--\r\n"
    ).encode()


async def test_a_bounce_from_the_mailbox_marks_the_address_until_the_customer_writes(
    hub: Hub,
    api: Api,
    dovecot: ImapServer,
    smtp_server: SmtpServer,
    user: str,
) -> None:
    conv_id, sent = await _first_contact_and_reply(hub, api, dovecot, smtp_server, user)
    append(dovecot, user, "INBOX", _bounce_of(sent))
    assert await _read_mailbox(hub) == 1

    [(status,)] = await _rows(
        hub,
        select(interaction_t.c.delivery_status).where(
            interaction_t.c.provider_id == str(sent["Message-ID"])
        ),
    )
    assert status == "bounced"
    [(mark, reason)] = await _rows(
        hub,
        select(identity_t.c.undeliverable_at, identity_t.c.undeliverable_reason).where(
            identity_t.c.value == CUSTOMER
        ),
    )
    assert mark is not None and reason == "5.1.1 550 5.1.1 User unknown"
    # On the customer's history, in no conversation; no lead for the mailer daemon.
    [(customer_id,)] = await _rows(hub, select(customer_t.c.id))  # the only customer
    bounce = await _rows(
        hub,
        select(interaction_t.c.customer_id, interaction_t.c.conversation_id).where(
            interaction_t.c.provider_id == "<bounce-1@mx.example.org>"
        ),
    )
    assert bounce == [(customer_id, None)]

    status_code, body = await api.call(
        "POST", f"/api/v1/conversations/{conv_id}/reply", "agent", json={"text": "Noch da?"}
    )
    assert status_code == 409, body

    append(dovecot, user, "INBOX", message(4, sender=CUSTOMER, Subject="Neue Adresse? Nein."))
    assert await _read_mailbox(hub) == 1
    [(mark, reason)] = await _rows(
        hub,
        select(identity_t.c.undeliverable_at, identity_t.c.undeliverable_reason).where(
            identity_t.c.value == CUSTOMER
        ),
    )
    assert (mark, reason) == (None, None)
    status_code, body = await api.call(
        "POST", f"/api/v1/conversations/{conv_id}/reply", "agent", json={"text": "Willkommen."}
    )
    assert status_code == 202, body
