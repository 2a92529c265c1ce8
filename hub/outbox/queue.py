"""The outbox: messages to send, stored before anything touches the wire.

A reply is one outbox row plus one history `Interaction` (delivery_status
"queued"), written in the caller's transaction; the dispatcher
(hub/outbox/dispatcher.py) sends it later. So a crash after the agent pressed "send"
loses nothing, and the agent sees the message in the history at once.

Delivery status on the interaction follows the provider's words (Twilio's
MessageStatus) but never moves backwards: callbacks arrive out of order, and
a late "sent" must not hide "delivered". Failures are final.

Email differs in one way: the Message-ID is ours, made when the row is queued
(see `enqueue`), so the history knows it before the relay does. A customer
who answers a mail that was sent while the dispatcher's result was still
unrecorded is threaded by In-Reply-To all the same, and every retry of the
row sends the same Message-ID (one mail, not several, in the customer's
thread).
"""

from __future__ import annotations

import email.utils
import enum
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from channels import registry
from channels.base import Channel, DeliveryReport, Direction, Sender
from channels.email.senders import message_id_domain
from channels.registry import statuses_of
from hub.config import Settings
from hub.errors import Conflict
from hub.events.bus import Event
from hub.events.kinds import interaction_delivery
from hub.privacy.suppression import opted_out_before_erasure
from hub.store.models import ConsentState, utcnow
from hub.store.tables import consent_t, customer_t, interaction_t, outbox_t

log = logging.getLogger(__name__)


class OutboxStatus(enum.StrEnum):
    QUEUED = "queued"  # waiting, maybe for a retry (next_attempt_at)
    SENDING = "sending"  # claimed by a dispatcher; claimed_at is the lease
    SENT = "sent"  # the provider accepted it (provider_id set)
    FAILED = "failed"  # permanent error or attempts used up
    BLOCKED = "blocked"  # the recipient opted out; never sent


MESSAGE_ID = "Message-ID"


def status_advances(channel: Channel | str, current: str | None, new: str) -> bool:
    """Whether `new` may replace `current` on a message of `channel` (its own words)."""
    return statuses_of(channel).advances(current, new)


def senders_from(settings: Settings) -> dict[str, Sender]:
    """The channels this node can send on, as the registry builds them from the config."""
    return registry.senders(settings, settings.outbox.send_timeout_seconds)


def opt_out_source(channel: Channel | str, error_code: str | None) -> str | None:
    """The consent source when a provider refused because the recipient opted out there."""
    statuses = statuses_of(channel)
    if error_code is not None and error_code in statuses.opt_out_errors:
        return f"{statuses.provider} {error_code}"
    return None


def is_marketing(row: Any) -> bool:
    """Whether an outbox row is marketing (a campaign's) rather than a transactional reply:
    campaign rows carry their campaign; `consent_applies` then gates their email."""
    return getattr(row, "campaign_id", None) is not None


def consent_applies(row: Any) -> bool:
    """Whether the recipient's opt-out stops this row at send time.

    SMS: always (issue 3: an opted-out number is never sent to; Twilio would
    refuse with 21610 anyway). Email: only marketing. An unsubscribe from the
    newsletter must not silence an agent's answer to the customer's own
    question, which is transactional mail the customer asked for.
    """
    if row.channel == Channel.EMAIL.value:
        return is_marketing(row)
    return True


@dataclass(frozen=True, slots=True)
class Enqueued:
    outbox_id: int
    interaction_id: int


async def enqueue(
    conn: AsyncConnection,
    *,
    customer_id: int,
    conversation_id: int | None,
    channel: Channel,
    sender: str,
    recipient: str,
    body: str,
    author_id: int | None,
    meta: Mapping[str, Any] | None = None,
    subject: str = "",
    headers: Mapping[str, str] | None = None,
    mailbox: str | None = None,
    provider_id: str | None = None,
    suppression_key: str = "",
) -> Enqueued:
    """Store the message and its history entry; commit with the caller's transaction.

    Email gets its Message-ID here (the caller's, from `headers` or
    `provider_id`, else a new one on the domain of `sender`): stored as the
    interaction's provider_id at once and in the row's headers, which every
    retry sends as they are. `mailbox` names the configured mailbox whose
    relay sends the row.
    """
    kind = "email" if channel is Channel.EMAIL else "phone"
    if await opted_out_before_erasure(conn, suppression_key, kind, recipient):
        # The person was erased, and had opted out: their data is gone, the
        # promise not to contact them is not.
        raise Conflict("the recipient opted out before their data was erased; nothing was sent")
    now = utcnow()
    stored_headers = dict(headers or {})
    if channel is Channel.EMAIL:
        given = [k for k in stored_headers if k.lower() == MESSAGE_ID.lower()]
        message_id = (stored_headers.pop(given[0]) if given else None) or provider_id
        if not message_id:
            address = email.utils.parseaddr(sender)[1] or sender
            message_id = email.utils.make_msgid(domain=message_id_domain(address))
        stored_headers = {MESSAGE_ID: message_id, **stored_headers}
        provider_id = message_id
    interaction_id = (
        await conn.execute(
            interaction_t.insert()
            .values(
                customer_id=customer_id,
                conversation_id=conversation_id,
                channel=channel.value,
                direction=Direction.OUT.value,
                occurred_at=now,
                subject=subject,
                text=body,
                provider_id=provider_id,
                sender=sender,
                recipient=recipient,
                delivery_status=OutboxStatus.QUEUED.value,
                meta=dict(meta or {}),
                author_id=author_id,
                created_at=now,
            )
            .returning(interaction_t.c.id)
        )
    ).scalar_one()
    outbox_id = (
        await conn.execute(
            outbox_t.insert()
            .values(
                customer_id=customer_id,
                conversation_id=conversation_id,
                interaction_id=interaction_id,
                channel=channel.value,
                recipient=recipient,
                body=body,
                subject=subject,
                headers=stored_headers,
                mailbox=mailbox,
                status=OutboxStatus.QUEUED.value,
                attempts=0,
                next_attempt_at=now,
                author_id=author_id,
                created_at=now,
                updated_at=now,
            )
            .returning(outbox_t.c.id)
        )
    ).scalar_one()
    meta_out = {**(meta or {}), "outbox_id": outbox_id}
    await conn.execute(
        update(interaction_t).where(interaction_t.c.id == interaction_id).values(meta=meta_out)
    )
    return Enqueued(outbox_id, interaction_id)


async def opted_out(conn: AsyncConnection, customer_id: int, channel: Channel) -> bool:
    """True when the newest consent row of any purpose on this channel says opted out.

    Issue 3: "an opted-out number is never sent to" — so a STOP blocks agent
    replies too, not only marketing; Twilio itself would refuse them (21610).
    """
    rows = (
        await conn.execute(
            select(consent_t.c.purpose, consent_t.c.state)
            .where(consent_t.c.customer_id == customer_id)
            .where(consent_t.c.channel == channel.value)
            .order_by(consent_t.c.recorded_at.desc(), consent_t.c.id.desc())
        )
    ).all()
    newest: dict[str, str] = {}
    for purpose, state in rows:
        newest.setdefault(purpose, state)
    return ConsentState.OPTED_OUT.value in newest.values()


async def record_opt_out(
    conn: AsyncConnection, customer_id: int, channel: Channel | str, source: str
) -> None:
    await conn.execute(
        consent_t.insert().values(
            customer_id=customer_id,
            channel=Channel(channel).value,
            purpose="marketing",
            state=ConsentState.OPTED_OUT.value,
            source=source,
            recorded_at=utcnow(),
        )
    )


async def set_interaction_status(
    conn: AsyncConnection,
    interaction_id: int,
    status: str,
    *,
    provider_id: str | None = None,
    error_code: str | None = None,
    error: str | None = None,
) -> Event | None:
    """Move the interaction's delivery status forward (only).

    Returns the event to publish after the commit when the status changed, so
    an agent's console can show "delivered" without reloading.
    """
    row = (
        await conn.execute(
            select(
                interaction_t.c.delivery_status,
                interaction_t.c.channel,
                interaction_t.c.provider_id,
                interaction_t.c.meta,
                interaction_t.c.customer_id,
                interaction_t.c.conversation_id,
                customer_t.c.team_id,
            )
            .join(customer_t, customer_t.c.id == interaction_t.c.customer_id)
            .where(interaction_t.c.id == interaction_id)
        )
    ).first()
    if row is None:
        return None
    values: dict[str, Any] = {}
    if provider_id and not row.provider_id:
        values["provider_id"] = provider_id
    changed = status_advances(row.channel, row.delivery_status, status)
    if changed:
        values["delivery_status"] = status
        if error_code or error:
            meta = dict(row.meta or {})
            meta.update({k: v for k, v in (("error_code", error_code), ("error", error)) if v})
            values["meta"] = meta
    if values:
        await conn.execute(
            update(interaction_t).where(interaction_t.c.id == interaction_id).values(**values)
        )
    if not changed:
        return None
    return interaction_delivery(
        interaction_id=interaction_id,
        customer_id=row.customer_id,
        conversation_id=row.conversation_id,
        delivery_status=status,
        error_code=error_code,
        team_id=row.team_id,
    )


async def rows_by_id(conn: AsyncConnection, ids: Sequence[int]) -> list[Any]:
    if not ids:
        return []
    return list(
        (
            await conn.execute(
                select(outbox_t).where(outbox_t.c.id.in_(ids)).order_by(outbox_t.c.id)
            )
        ).all()
    )


def backoff(attempts: int, base: float, cap: float) -> float:
    """Seconds before the next try after `attempts` tries: base, 2·base, 4·base … ≤ cap."""
    return float(min(cap, base * 2 ** max(0, attempts - 1)))


async def apply_status(conn: AsyncConnection, report: DeliveryReport) -> tuple[bool, Event | None]:
    """A provider's delivery report onto the interaction and its outbox row.

    Returns whether the message is ours (else the caller still answers 2xx,
    or Twilio would retry a report we can never use) and the event to publish.
    """
    iid = (
        await conn.execute(
            select(interaction_t.c.id)
            .where(interaction_t.c.channel == report.channel.value)
            .where(interaction_t.c.provider_id == report.provider_id)
            .where(interaction_t.c.direction == Direction.OUT.value)
        )
    ).scalar()
    row = None
    if iid is not None:
        row = (await conn.execute(select(outbox_t).where(outbox_t.c.interaction_id == iid))).first()
    elif report.outbox_id is not None:
        # The report overtook our own record of the MessageSid (or a crash lost it).
        row = (
            await conn.execute(select(outbox_t).where(outbox_t.c.id == report.outbox_id))
        ).first()
        if row is None or row.provider_id not in (None, report.provider_id):
            return False, None
        iid = row.interaction_id
    if iid is None:
        return False, None
    event = await set_interaction_status(
        conn, iid, report.status, provider_id=report.provider_id, error_code=report.error_code
    )
    if row is not None:
        values: dict[str, Any] = {"provider_id": report.provider_id, "updated_at": utcnow()}
        if status_advances(report.channel, row.provider_status, report.status):
            values["provider_status"] = report.status
            if report.status in statuses_of(report.channel).all_failed:
                values["status"] = OutboxStatus.FAILED.value
                values["last_error"] = f"{report.status} (error {report.error_code or 'none'})"
        await conn.execute(update(outbox_t).where(outbox_t.c.id == row.id).values(**values))
    source = opt_out_source(report.channel, report.error_code)
    if source is not None:
        customer_id = (
            await conn.execute(select(interaction_t.c.customer_id).where(interaction_t.c.id == iid))
        ).scalar_one()
        await record_opt_out(conn, customer_id, report.channel, source)
    return True, event
