"""The email channel's outbox sender: one SMTP pool per configured mailbox.

A reply must leave through the mailbox the conversation came in on (its
relay, its From, its SPF/DKIM domain), so the hub's single "email" sender
routes each message by `metadata["mailbox"]`, which the dispatcher fills
from the outbox row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from channels.base import Channel, DeliveryResult, DeliveryState, OutboundMessage
from channels.email.config import MailboxConfig
from channels.email.smtp import SmtpSender

ERROR_NO_MAILBOX = "no_mailbox"


def message_id_domain(address: str) -> str:
    """Right-hand side of the Message-IDs we generate for mail from `address`.

    The sending address's own domain: replies and bounces quoting the ID are
    then recognisably ours, and receivers see an ID matching the From domain.
    """
    domain = address.rpartition("@")[2].strip().strip(">").lower()
    return domain or "localhost"


class MailboxSenders:
    """An outbox `Sender` for channel EMAIL over the mailboxes that have `smtp`."""

    channel = Channel.EMAIL

    def __init__(self, mailboxes: Sequence[MailboxConfig]) -> None:
        self.mailboxes: dict[str, MailboxConfig] = {}
        self.by_mailbox: dict[str, SmtpSender] = {}
        for mailbox in mailboxes:
            config = mailbox.smtp_config()
            if config is None:
                continue
            self.mailboxes[mailbox.name] = mailbox
            self.by_mailbox[mailbox.name] = SmtpSender(config)
        if not self.by_mailbox:
            raise ValueError("no mailbox has smtp configured")
        senders = list(self.by_mailbox.values())
        # The dispatcher paces per channel, not per relay: the slowest relay's
        # rate is the one every mailbox can keep to.
        self.rate_per_second = min(s.rate_per_second for s in senders)
        self.max_body_length = min(s.max_body_length for s in senders)
        # Sends in flight: every relay's pool can be busy at once.
        self.concurrency = sum(s.concurrency for s in senders)

    @property
    def sender(self) -> str:
        """The default mailbox's From; a message's own mailbox decides its real From."""
        return next(iter(self.by_mailbox.values())).sender

    def get(self, mailbox: str | None) -> SmtpSender | None:
        return self.by_mailbox.get(mailbox) if mailbox else None

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        name = message.metadata.get("mailbox")
        smtp = self.get(str(name) if name else None)
        if smtp is None:
            # Permanent: retrying cannot make an unconfigured mailbox appear, and
            # sending through another would put a wrong From on the reply.
            return DeliveryResult(
                DeliveryState.FAILED,
                provider_id=message.headers.get("Message-ID"),
                error_code=ERROR_NO_MAILBOX,
                error=f"no mailbox {name!r} with smtp is configured on this node",
            )
        if not message.sender:
            # From is the mailbox's own address; smtp.from_address may be a
            # separate envelope sender (a bounce address) that must not show.
            message = dataclasses.replace(message, sender=self.mailboxes[str(name)].address)
        return await smtp.send(message)

    async def close(self) -> None:
        for smtp in self.by_mailbox.values():
            await smtp.close()
