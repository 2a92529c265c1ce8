"""An agent's reply in a conversation: checked, then queued in the outbox.

Everything that can be decided before the wire is decided here, so the
agent gets the answer while still looking at the conversation: not theirs
(404), role (403), nothing to send with or a body the channel cannot carry
(422), a customer who opted out of SMS or whose only address bounced (409,
and nothing is stored: the message was never sent and must not look as if
it might still be). The dispatcher checks SMS consent again just before
sending, since a STOP may arrive in between.

Email replies are transactional: a newsletter unsubscribe does not stop an
agent from answering the customer's own mail. Their recipient, mailbox and
thread headers are worked out in hub/outbox/email_reply.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from channels.base import Channel, Direction, Sender
from channels.email.senders import MailboxSenders
from channels.sms.segments import BodyTooLong, check_body
from hub.config import Settings
from hub.errors import Conflict, Invalid
from hub.events.bus import Event
from hub.events.kinds import interaction_created
from hub.outbox.email_reply import prepare_email_reply
from hub.outbox.queue import Enqueued, enqueue, opted_out
from hub.records.access import Action, require
from hub.records.auth import Principal
from hub.records.history import HistoryStore
from hub.records.identity import InvalidIdentity, normalize_phone
from hub.store.models import Conversation, IdentityKind, Interaction
from hub.store.tables import identity_t, interaction_t


async def _sms_recipient(
    conn: AsyncConnection, conversation_id: int, customer_id: int, region: str
) -> str | None:
    """The number the customer last wrote from in this conversation, else their phone."""
    last_sender = (
        await conn.execute(
            select(interaction_t.c.sender)
            .where(interaction_t.c.conversation_id == conversation_id)
            .where(interaction_t.c.direction == Direction.IN.value)
            .where(interaction_t.c.channel == Channel.SMS.value)
            .order_by(interaction_t.c.occurred_at.desc(), interaction_t.c.id.desc())
            .limit(1)
        )
    ).scalar()
    if last_sender:
        try:
            ident = normalize_phone(last_sender, region)
        except InvalidIdentity:
            ident = None
        if ident is not None and ident.verified:
            return ident.value
    phone = (
        await conn.execute(
            select(identity_t.c.value)
            .where(identity_t.c.customer_id == customer_id)
            .where(identity_t.c.kind == IdentityKind.PHONE.value)
            .where(identity_t.c.verified.is_(True))
            .order_by(identity_t.c.primary.desc(), identity_t.c.id)
            .limit(1)
        )
    ).scalar()
    return str(phone) if phone else None


async def reply(
    session: AsyncSession,
    principal: Principal,
    settings: Settings,
    senders: Mapping[str, Sender],
    conversation_id: int,
    text: str,
    subject: str | None = None,
) -> tuple[Interaction, Event]:
    """Queue `text` to the conversation's customer; the event is for after the commit.

    `subject` overrides an email reply's "Re: <conversation subject>".
    """
    require(principal, Action.WRITE_HISTORY)
    region = settings.identity.default_region
    store = HistoryStore(session, principal, region)
    conv = await store.conversation(conversation_id)
    assert conv.id is not None
    sender = senders.get(conv.channel)
    queue = _QUEUERS.get(Channel(conv.channel))
    if sender is None or queue is None:
        raise Invalid(f"replies on {conv.channel} conversations are not configured")
    conn = await session.connection()
    queued = await queue(conn, conv, sender, settings, principal, text, subject)
    interaction = await session.get(Interaction, queued.interaction_id)
    assert interaction is not None
    customer = await store.customers.get(conv.customer_id)
    assert interaction.id is not None
    event = interaction_created(
        interaction_id=interaction.id,
        customer_id=conv.customer_id,
        conversation_id=conv.id,
        channel=conv.channel,
        direction=Direction.OUT,
        sender=interaction.sender or "",
        recipient=interaction.recipient or "",
        subject=interaction.subject or "",
        delivery_status=interaction.delivery_status,
        team_id=customer.team_id,
    )
    return interaction, event


async def _queue_sms(
    conn: AsyncConnection,
    conv: Conversation,
    sender: Sender,
    settings: Settings,
    principal: Principal,
    text: str,
    subject: str | None,
) -> Enqueued:
    assert conv.id is not None
    if subject:
        raise Invalid("subject: an SMS has no subject")
    region = settings.identity.default_region
    try:
        count = check_body(text, sender.max_body_length)
    except BodyTooLong as exc:
        raise Invalid(f"text: {exc}") from exc
    recipient = await _sms_recipient(conn, conv.id, conv.customer_id, region)
    if recipient is None:
        raise Invalid("the customer has no valid phone number to reply to")
    if await opted_out(conn, conv.customer_id, Channel.SMS):
        raise Conflict("the customer opted out of SMS; nothing was sent")
    return await enqueue(
        conn,
        customer_id=conv.customer_id,
        conversation_id=conv.id,
        channel=Channel.SMS,
        sender=sender.sender,
        recipient=recipient,
        body=text,
        author_id=principal.user_id,
        meta={"segments": count.segments, "encoding": count.encoding.value},
        suppression_key=settings.privacy.suppression_key,
    )


async def _queue_email(
    conn: AsyncConnection,
    conv: Conversation,
    senders: Sender,
    settings: Settings,
    principal: Principal,
    text: str,
    subject: str | None,
) -> Enqueued:
    # The registry builds email's sender as MailboxSenders: one relay per mailbox.
    assert isinstance(senders, MailboxSenders)
    mail = await prepare_email_reply(
        conn, conv, senders, settings.email.reply_token_secret, text, subject
    )
    meta: dict[str, Any] = {"mailbox": mail.mailbox.name}
    return await enqueue(
        conn,
        customer_id=conv.customer_id,
        conversation_id=conv.id,
        channel=Channel.EMAIL,
        sender=mail.smtp.sender,
        recipient=mail.recipient,
        body=text,
        author_id=principal.user_id,
        meta=meta,
        subject=mail.subject,
        headers=mail.headers,
        mailbox=mail.mailbox.name,
        suppression_key=settings.privacy.suppression_key,
    )


# How a reply is queued on each channel that can answer a conversation; a
# channel missing here answers 422 "not configured".
Queuer = Callable[
    [AsyncConnection, Conversation, Sender, Settings, Principal, str, str | None],
    Awaitable[Enqueued],
]
_QUEUERS: dict[Channel, Queuer] = {Channel.SMS: _queue_sms, Channel.EMAIL: _queue_email}
