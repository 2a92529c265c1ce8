"""Raw email bytes → `InboundContact`, with the stdlib `email` package (policy.default).

Mail in the wild is broken in every way a header or a charset can be broken;
a mailbox must keep flowing, so a message that can be read at all yields a
contact (with the problems listed under `MetaKey.PARSE_DEFECTS`) and only one
that cannot (no bytes, no sender) or that is over a limit (`MailLimits`)
raises `UnparseableEmail` for the quarantine.

`read_message` writes nothing: it returns the attachment contents for the
caller to store, so it can run in a worker process that may be killed
(parser_pool.py). `parse_message` is the same in one call, storing as it goes.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from channels.base import Channel, InboundContact, MetaKey
from channels.email.attachments import AttachmentStore
from channels.email.errors import LimitExceeded, UnparseableEmail
from channels.email.headers import (
    addresses,
    defect_names,
    drop_headerless_lines,
    first_address,
    first_message_id,
    header,
    header_date,
    message_ids,
    return_path,
)
from channels.email.limits import MailLimits, check_attachments, check_raw, check_tree
from channels.email.parts import attachment_parts, body_text, delivery_report, is_dsn
from channels.email.policy import POLICY
from channels.email.text import split_quote

__all__ = ["LimitExceeded", "ParsedMail", "UnparseableEmail", "parse_message", "read_message"]

DIGEST_DOMAIN = "crmhub.invalid"
DEFAULT_LIMITS = MailLimits()


@dataclass(frozen=True, slots=True)
class ParsedMail:
    contact: InboundContact
    # Attachment contents to store, by sha256 (those within the size limit).
    blobs: dict[str, bytes] = field(default_factory=dict)


def parse_message(
    raw: bytes,
    *,
    max_bytes: int,
    attachment_store: AttachmentStore | None,
    received_at: datetime | None = None,
    limits: MailLimits = DEFAULT_LIMITS,
) -> InboundContact:
    """Parse one message and store its attachments; over `max_bytes` they are
    referenced but not stored.

    `received_at` (e.g. the IMAP INTERNALDATE) stands in for a missing or
    unreadable Date header; without it the current time is used.
    """
    parsed = read_message(raw, max_bytes=max_bytes, received_at=received_at, limits=limits)
    if attachment_store is not None:
        for data in parsed.blobs.values():
            attachment_store.put(data)
    return parsed.contact


def read_message(
    raw: bytes,
    *,
    max_bytes: int,
    received_at: datetime | None = None,
    limits: MailLimits = DEFAULT_LIMITS,
) -> ParsedMail:
    """Parse one message within `limits`; the contact and the attachments to store."""
    if not raw or not raw.strip():
        raise UnparseableEmail("empty message")
    check_raw(raw, limits)
    defects: list[str] = []
    repaired = drop_headerless_lines(raw)
    if repaired != raw:
        defects.append("HeaderWithoutColon")
    try:
        msg = email.message_from_bytes(repaired, policy=POLICY)
    except Exception as exc:  # the parser is lenient; this is the last line of defence
        raise UnparseableEmail(f"MIME parse failed: {exc}") from exc
    if not isinstance(msg, EmailMessage):  # policy.default always builds one; keeps mypy honest
        raise UnparseableEmail("MIME parse returned no message")
    check_tree(msg, limits)

    sender_name, sender = first_address(msg, "From", defects)
    if not sender:
        sender_name, sender = first_address(msg, "Sender", defects)
    if not sender:
        raise UnparseableEmail("no sender address (From/Sender missing or unreadable)")
    recipient = ""
    for name in ("Delivered-To", "X-Original-To", "To"):
        recipient = first_address(msg, name, defects)[1]
        if recipient:
            break

    full_text, text_defect = body_text(
        msg, max_chars=limits.max_text_chars, max_quote_depth=limits.max_quote_depth
    )
    if text_defect:
        defects.append(text_defect)
    new_text, quoted = split_quote(full_text)
    files, skipped, blobs = attachment_parts(msg, max_bytes, defects)
    check_attachments(sum(len(b) for b in blobs.values()), limits)

    subject = header(msg, "Subject", defects) or ""
    message_id = first_message_id(header(msg, "Message-ID", defects) or "")
    if not message_id:
        message_id = digest_id(raw)
    refs = message_ids(header(msg, "In-Reply-To", defects)) + message_ids(
        header(msg, "References", defects)
    )
    occurred_at = header_date(msg, defects) or received_at or datetime.now(UTC)
    if occurred_at.tzinfo is None:
        occurred_at = occurred_at.replace(tzinfo=UTC)

    metadata: dict[str, Any] = {
        MetaKey.FULL_TEXT: full_text,
        MetaKey.QUOTED_TEXT: quoted,
        MetaKey.AUTO_SUBMITTED: header(msg, "Auto-Submitted", defects),
        MetaKey.PRECEDENCE: header(msg, "Precedence", defects),
        MetaKey.X_AUTOREPLY: header(msg, "X-Autoreply", defects),
        MetaKey.X_AUTO_RESPONSE_SUPPRESS: header(msg, "X-Auto-Response-Suppress", defects),
        MetaKey.RETURN_PATH: return_path(header(msg, "Return-Path", defects)),
        MetaKey.CONTENT_TYPE: msg.get_content_type(),
        MetaKey.IS_DSN: is_dsn(msg),
        MetaKey.LIST_ID: header(msg, "List-Id", defects),
        MetaKey.LIST_UNSUBSCRIBE: header(msg, "List-Unsubscribe", defects),
        MetaKey.TO: addresses(msg, "To", defects),
        MetaKey.CC: addresses(msg, "Cc", defects),
        MetaKey.REPLY_TO: addresses(msg, "Reply-To", defects),
    }
    if metadata[MetaKey.IS_DSN]:
        report, original_headers = delivery_report(msg)
        metadata[MetaKey.DSN_TEXT] = report
        metadata[MetaKey.DSN_ORIGINAL_HEADERS] = original_headers
    if skipped:
        metadata[MetaKey.SKIPPED_ATTACHMENTS] = skipped
    defects.extend(defect_names(msg))
    metadata[MetaKey.PARSE_DEFECTS] = sorted(set(defects))
    contact = InboundContact(
        channel=Channel.EMAIL,
        sender=sender,
        sender_name=sender_name,
        recipient=recipient,
        subject=subject.strip(),
        text=new_text,
        provider_id=message_id,
        thread_refs=tuple(dict.fromkeys(refs)),
        occurred_at=occurred_at,
        metadata=metadata,
        attachments=tuple(files),
    )
    return ParsedMail(contact, blobs)


def digest_id(raw: bytes) -> str:
    """A stable stand-in Message-ID: sha256 of Date, From, To, Subject and the body's first KB.

    Ingest is idempotent on (channel, provider_id), and an IMAP UIDVALIDITY
    resync fetches the same message again, so the id must not change between
    two fetches. Only headers the sender wrote are used: servers prepend
    Received / X-Spam headers on delivery, so hashing all bytes would give a
    copy in another folder a new id. The body's start separates automated
    mails that share sender, subject and second. The `.invalid` domain
    (RFC 2606) can never collide with a real Message-ID.
    """
    head, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
    fields: dict[bytes, bytes] = {}
    current = b""
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and current:
            fields[current] += b" " + line.strip()
            continue
        name, colon, value = line.partition(b":")
        current = name.strip().lower() if colon else b""
        if current in (b"date", b"from", b"to", b"subject") and current not in fields:
            fields[current] = value.strip()
        elif current and current not in (b"date", b"from", b"to", b"subject"):
            current = b""
    h = hashlib.sha256()
    for key in (b"date", b"from", b"to", b"subject"):
        h.update(fields.get(key, b"") + b"\0")
    h.update(body[:1024])
    return f"<sha256:{h.hexdigest()}@{DIGEST_DOMAIN}>"
