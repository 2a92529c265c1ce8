"""channels/email/inbound.py alone: plain bytes in, one InboundContact out (no hub, no database)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from channels.base import Channel, MetaKey
from channels.email.attachments import AttachmentStore
from channels.email.config import EmailConfig
from channels.email.inbound import MailReader, UnparseableEmail
from channels.email.reply_token import reply_address

SECRET = "inbound-test-secret-0123456789"
AT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def raw(*headers: str, body: str = "Where is my order?") -> bytes:
    lines = [
        "From: Jane Doe <jane@customer.example>",
        "Subject: Order 4711",
        "Message-ID: <m1@customer.example>",
        *headers,
        "MIME-Version: 1.0",
        'Content-Type: text/plain; charset="utf-8"',
        "",
        body,
        "",
    ]
    return "\r\n".join(lines).encode()


def reader(secret: str = SECRET, attachments: AttachmentStore | None = None) -> MailReader:
    return MailReader(EmailConfig(reply_token_secret=secret), attachments)


async def test_a_plain_mail_becomes_a_contact_with_where_it_was_read() -> None:
    contact = await reader().read(
        raw("To: support@crm.example", "Date: Tue, 01 Dec 2026 08:00:00 +0000"),
        mailbox="support",
        folder="INBOX",
        uid=42,
        received_at=AT,
    )
    assert (
        contact.channel,
        contact.sender,
        contact.sender_name,
        contact.recipient,
        contact.subject,
        contact.provider_id,
        contact.text.strip(),
        contact.occurred_at,
    ) == (
        Channel.EMAIL,
        "jane@customer.example",
        "Jane Doe",
        "support@crm.example",
        "Order 4711",
        "<m1@customer.example>",
        "Where is my order?",
        datetime(2026, 12, 1, 8, 0, tzinfo=UTC),
    )
    meta = contact.metadata
    assert (meta[MetaKey.MAILBOX], meta[MetaKey.FOLDER], meta[MetaKey.UID]) == (
        "support",
        "INBOX",
        42,
    )
    assert meta[MetaKey.TO] == ["support@crm.example"]
    assert MetaKey.REPLY_TOKEN_CONVERSATION not in meta
    # Every key the reader sets is a named one: the contract routing reads.
    assert all(isinstance(key, MetaKey) for key in meta)


async def test_received_at_stands_in_for_a_missing_date() -> None:
    contact = await reader().read(
        raw("To: support@crm.example"), mailbox="support", folder="INBOX", uid=1, received_at=AT
    )
    assert contact.occurred_at == AT


@pytest.mark.parametrize("header", ["To", "Cc"])
async def test_a_valid_reply_token_names_its_conversation(header: str) -> None:
    token = reply_address("support@crm.example", SECRET, 77)
    contact = await reader().read(
        raw(f"{header}: {token}"), mailbox="support", folder="INBOX", uid=2, received_at=AT
    )
    assert contact.metadata[MetaKey.REPLY_TOKEN_CONVERSATION] == 77


async def test_a_token_signed_with_another_secret_or_without_one_names_nothing() -> None:
    forged = reply_address("support@crm.example", "someone-elses-secret", 77)
    for r in (reader(), reader(secret="")):
        contact = await r.read(raw(f"To: {forged}"), mailbox="m", folder="INBOX", uid=3)
        assert MetaKey.REPLY_TOKEN_CONVERSATION not in contact.metadata


async def test_a_token_in_the_delivered_to_recipient_counts_too() -> None:
    token = reply_address("support@crm.example", SECRET, 5)
    contact = await reader().read(
        raw(f"Delivered-To: {token}", "To: undisclosed-recipients:;"),
        mailbox="m",
        folder="INBOX",
        uid=4,
    )
    assert (contact.recipient, contact.metadata[MetaKey.REPLY_TOKEN_CONVERSATION]) == (token, 5)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty message"),
        (b"Subject: no sender\r\n\r\nbody\r\n", "no sender address"),
    ],
)
async def test_what_is_not_a_usable_email_is_refused_with_a_reason(
    data: bytes, reason: str
) -> None:
    with pytest.raises(UnparseableEmail, match=reason):
        await reader().read(data, mailbox="m", folder="INBOX", uid=5)


async def test_attachments_go_to_the_store_it_was_given(tmp_path: Path) -> None:
    data = (
        b"From: jane@customer.example\r\nMessage-ID: <a1@x>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        b"--b\r\nContent-Type: application/pdf\r\n"
        b'Content-Disposition: attachment; filename="invoice.pdf"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n"
    )
    store = AttachmentStore(str(tmp_path))
    contact = await reader(attachments=store).read(data, mailbox="m", folder="INBOX", uid=6)
    assert [(a.filename, a.content_type, a.size) for a in contact.attachments] == [
        ("invoice.pdf", "application/pdf", 9)
    ]
    assert contact.attachments[0].sha256 is not None
    assert any(p.is_file() for p in tmp_path.rglob("*"))  # noqa: ASYNC240 (a test's tmp dir)
