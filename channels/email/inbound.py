"""A message read from a mailbox: raw bytes in, one `InboundContact` out.

The IMAP sync and the quarantine's retry both hand raw RFC 5322 bytes to the
hub, and the hub must never parse mail itself: this is where the bytes
become a contact, with where they were read (mailbox, folder, UID) and the
conversation a signed reply-token recipient names, so that routing finds
everything it needs under `MetaKey` and the hub only stores.

Parsing runs in a worker process (parser_pool.py) within the limits of the
email section's `limits`; the attachments it returns are written here, in a
thread, after the per-message and store quotas are checked, so a message
is stored whole or (over a limit) not at all.

A message that is not a usable email or is over a limit raises
`UnparseableEmail`, whose text is the reason the quarantine records.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

from channels.base import InboundContact, MetaKey
from channels.email.attachments import AttachmentStore
from channels.email.config import EmailConfig
from channels.email.errors import LimitExceeded, UnparseableEmail
from channels.email.parser_pool import ParseJob, ParserPool
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
        self.limits = email.limits
        self.attachments = attachments
        self.pool = ParserPool.shared(email.limits)

    async def read(
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
        if received_at is not None and received_at.tzinfo is not None:
            # imapclient's FixedOffset does not pickle; the instant is what matters.
            received_at = received_at.astimezone(UTC)
        parsed = await self.pool.parse(
            ParseJob(raw, self.max_attachment_bytes, received_at, self.limits)
        )
        if parsed.blobs and self.attachments is not None:
            await asyncio.to_thread(self._store, parsed.blobs)
        contact = parsed.contact
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

    def _store(self, blobs: dict[str, bytes]) -> None:
        assert self.attachments is not None
        quota = self.limits.attachments_quota_bytes
        if quota:
            new = self.attachments.new_bytes(blobs)
            used = self.attachments.used_bytes()
            if new and used + new > quota:
                raise LimitExceeded(
                    f"the attachment store is full: {used} + {new} bytes would pass its quota "
                    f"of {quota} bytes (email.limits.attachments_quota_bytes)"
                )
        for data in blobs.values():
            self.attachments.put(data)
