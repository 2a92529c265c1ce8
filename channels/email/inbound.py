"""A message read from a mailbox: raw bytes in, one `InboundContact` out.

The IMAP sync and the quarantine's retry both hand raw RFC 5322 bytes to the
hub, and the hub must never parse mail itself: this is where the bytes
become a contact, with where they were read (mailbox, folder, UID) and the
conversation a signed reply-token recipient names, so that routing finds
everything it needs under `MetaKey` and the hub only stores.

A message that is not a usable email raises `UnparseableEmail`, whose text
is the reason the quarantine records.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from channels.base import InboundContact, MetaKey
from channels.email.attachments import AttachmentStore
from channels.email.config import EmailConfig
from channels.email.parse import UnparseableEmail, parse_message
from channels.email.reply_token import conversation_of

__all__ = ["MailReader", "UnparseableEmail"]


class MailReader:
    """Turns raw mailbox messages into contacts with the email section's limits and secret.

    The mailbox sync and the quarantine build it from the same email section,
    so a message retried from the quarantine is read exactly as the sync read it.
    """

    def __init__(self, email: EmailConfig, attachments: AttachmentStore | None) -> None:
        self.max_attachment_bytes = email.max_attachment_bytes
        self.reply_token_secret = email.reply_token_secret
        self.attachments = attachments

    def read(
        self,
        raw: bytes,
        *,
        mailbox: str,
        folder: str,
        uid: int,
        received_at: datetime | None = None,
    ) -> InboundContact:
        """Parse one message and add where it came from (and its reply token, if valid).

        `received_at` (the IMAP INTERNALDATE, or when the quarantine took it)
        stands in for a missing or unreadable Date header.
        """
        contact = parse_message(
            raw,
            max_bytes=self.max_attachment_bytes,
            attachment_store=self.attachments,
            received_at=received_at,
        )
        meta = dict(contact.metadata)
        meta.update({MetaKey.MAILBOX: mailbox, MetaKey.FOLDER: folder, MetaKey.UID: uid})
        recipients = [
            contact.recipient,
            *meta.get(MetaKey.TO, []),
            *meta.get(MetaKey.CC, []),
        ]
        token_conv = conversation_of(recipients, self.reply_token_secret)
        if token_conv is not None:
            meta[MetaKey.REPLY_TOKEN_CONVERSATION] = token_conv
        return dataclasses.replace(contact, metadata=meta)
