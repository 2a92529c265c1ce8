"""An agent's reply in an email conversation: to whom, through which mailbox, in which thread.

Everything is decided from what the conversation already holds, so the
reply reaches the customer the way they wrote to us: to the address they
last wrote from, out of the mailbox they wrote to (its relay, its From),
and in their mail client's thread (In-Reply-To / References), with a
reply-token Reply-To that brings their answer back here even when a
client strips the threading headers.
"""

from __future__ import annotations

import contextlib
import email.utils
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from channels.base import Channel, Direction
from channels.email.config import MailboxConfig
from channels.email.parse import DIGEST_DOMAIN
from channels.email.reply_token import reply_address
from channels.email.senders import MailboxSenders
from channels.email.smtp import SmtpSender
from channels.email.status import EMAIL_STATUSES
from hub.errors import Conflict, Invalid
from hub.records.identity import InvalidIdentity, normalize_email
from hub.store.models import Conversation, IdentityKind
from hub.store.tables import identity_t, interaction_t

# RFC 5322 §3.6.4 lets References be trimmed; long threads would otherwise
# grow the header without bound. The root is kept (clients thread on it).
MAX_REFERENCES = 20
# Reply prefixes in the languages our customers write in (German "AW",
# Scandinavian "SV", "Re[2]" of some clients): one "Re: " replaces them all.
_REPLY_PREFIX = re.compile(r"^\s*(?:(?:re|aw|antw|sv)\s*(?:\[\d+\]|\(\d+\))?\s*:\s*)+", re.I)
# How many of the newest inbound mails are looked at for the mailbox they came in on.
_RECENT_INBOUND = 50


@dataclass(frozen=True, slots=True)
class EmailReply:
    mailbox: MailboxConfig
    smtp: SmtpSender
    recipient: str
    subject: str
    headers: dict[str, str]


def reply_subject(subject: str) -> str:
    """ "Re: <subject>", without stacking "Re: Re:" (or "Re: AW:")."""
    base = _REPLY_PREFIX.sub("", subject).strip()
    return f"Re: {base}" if base else "Re:"


def _address(raw: str) -> str:
    return email.utils.parseaddr(raw or "")[1].strip().lower()


def _unaddressed(address: str) -> str:
    """`local+tag@domain` -> `local@domain`: a reply to our reply-token address
    came in on the mailbox whose address it extends."""
    local, _, domain = address.partition("@")
    return f"{local.split('+', 1)[0]}@{domain}"


def _pick_mailbox(recent: Sequence[Any], senders: MailboxSenders) -> MailboxConfig:
    """The mailbox the conversation came in on; the first that sends only when none is known.

    A conversation that came in on a mailbox that cannot send (no smtp, or no
    longer configured) is refused (422) rather than answered from another of
    our addresses: that mailbox may belong to another team or brand, and the
    customer would get an answer from an address they never wrote to.
    """
    named = next((r.meta["mailbox"] for r in recent if (r.meta or {}).get("mailbox")), None)
    if named is not None:
        if named in senders.mailboxes:
            return senders.mailboxes[named]
        raise Invalid(
            f"the conversation came in on mailbox {named!r}, which cannot send "
            "(no smtp configured); nothing was sent"
        )
    if recent:
        to = _unaddressed(_address(recent[0].recipient))
        for mailbox in senders.mailboxes.values():
            if to in (mailbox.address, mailbox.reply_address):
                return mailbox
    return next(iter(senders.mailboxes.values()))


async def _recipient(conn: AsyncConnection, customer_id: int, last_sender: str | None) -> str:
    """The address the customer last wrote from, else their primary deliverable one.

    An address that bounced permanently (`undeliverable_at`) is skipped: the
    relay would accept the mail and the bounce would only come back later.
    """
    candidates: list[str] = []
    if last_sender:
        # Unparseable (a mangled From): the customer's stored addresses remain.
        with contextlib.suppress(InvalidIdentity):
            candidates.append(normalize_email(last_sender).value)
    known = (
        await conn.execute(
            select(identity_t.c.value)
            .where(identity_t.c.customer_id == customer_id)
            .where(identity_t.c.kind == IdentityKind.EMAIL.value)
            .where(identity_t.c.verified.is_(True))
            .order_by(identity_t.c.primary.desc(), identity_t.c.id)
        )
    ).scalars()
    candidates.extend(v for v in known if v not in candidates)
    if not candidates:
        raise Invalid("the customer has no email address to reply to")
    bounced = {
        row.value: row.undeliverable_reason
        for row in (
            await conn.execute(
                select(identity_t.c.value, identity_t.c.undeliverable_reason)
                .where(identity_t.c.kind == IdentityKind.EMAIL.value)
                .where(identity_t.c.value.in_(candidates))
                .where(identity_t.c.undeliverable_at.is_not(None))
            )
        ).all()
    }
    for address in candidates:
        if address not in bounced:
            return address
    first = candidates[0]
    reason = bounced[first] or "permanent bounce"
    raise Conflict(f"the address {first} is undeliverable ({reason}); nothing was sent")


def _stand_in(message_id: str) -> bool:
    """Our digest id for mail that had no Message-ID: no mail client knows it, so it
    must not appear in In-Reply-To or References."""
    return message_id.endswith(f"@{DIGEST_DOMAIN}>")


async def _references(conn: AsyncConnection, conversation_id: int, upto_id: int) -> list[str]:
    """Message-IDs of the thread up to and including the mail being answered, oldest first.

    Inbound mail's own References are not stored, so the conversation's
    history stands in for them: it is the same thread as far as we saw it.
    Our own mails that never left (failed, blocked) are not part of it.
    """
    rows = (
        await conn.execute(
            select(interaction_t.c.id, interaction_t.c.provider_id)
            .where(interaction_t.c.conversation_id == conversation_id)
            .where(interaction_t.c.channel == Channel.EMAIL.value)
            .where(interaction_t.c.provider_id.is_not(None))
            .where(
                or_(
                    interaction_t.c.direction == Direction.IN.value,
                    interaction_t.c.delivery_status.is_(None),
                    interaction_t.c.delivery_status.not_in(sorted(EMAIL_STATUSES.all_final)),
                )
            )
            .order_by(interaction_t.c.occurred_at, interaction_t.c.id)
        )
    ).all()
    refs: list[str] = []
    for row in rows:
        if row.provider_id not in refs and not _stand_in(row.provider_id):
            refs.append(row.provider_id)
        if row.id == upto_id:
            break
    if len(refs) > MAX_REFERENCES:
        refs = [refs[0], *refs[-(MAX_REFERENCES - 1) :]]
    return refs


async def prepare_email_reply(
    conn: AsyncConnection,
    conv: Conversation,
    senders: MailboxSenders,
    reply_token_secret: str,
    text: str,
    subject: str | None,
) -> EmailReply:
    """Everything the outbox row needs, or the reason (422/409) no reply can go out."""
    assert conv.id is not None
    recent = (
        await conn.execute(
            select(
                interaction_t.c.id,
                interaction_t.c.sender,
                interaction_t.c.recipient,
                interaction_t.c.subject,
                interaction_t.c.provider_id,
                interaction_t.c.meta,
            )
            .where(interaction_t.c.conversation_id == conv.id)
            .where(interaction_t.c.channel == Channel.EMAIL.value)
            .where(interaction_t.c.direction == Direction.IN.value)
            .order_by(interaction_t.c.occurred_at.desc(), interaction_t.c.id.desc())
            .limit(_RECENT_INBOUND)
        )
    ).all()
    mailbox = _pick_mailbox(recent, senders)
    smtp = senders.by_mailbox[mailbox.name]
    if len(text) > smtp.max_body_length:
        raise Invalid(
            f"text: the message has {len(text)} characters; at most "
            f"{smtp.max_body_length} can be sent by email"
        )
    newest = recent[0] if recent else None
    recipient = await _recipient(conn, conv.customer_id, newest.sender if newest else None)
    headers = {
        "Reply-To": reply_address(
            mailbox.reply_address or mailbox.address, reply_token_secret, conv.id
        )
    }
    if newest is not None and newest.provider_id:
        if not _stand_in(newest.provider_id):
            headers["In-Reply-To"] = newest.provider_id
        # The thread's real Message-IDs still thread the reply in mail clients
        # when the newest mail had none of its own.
        references = await _references(conn, conv.id, newest.id)
        if references:
            headers["References"] = " ".join(references)
    if not subject:
        subject = reply_subject(conv.subject or (newest.subject if newest else ""))
    return EmailReply(mailbox, smtp, recipient, subject, headers)
