"""The writes of one group-commit batch, after every contact in it was routed.

All per-contact decisions are made before the first write (see
hub/ingest.py), so a contact that fails validation or routing is dropped from
the batch without leaving anything behind. The writes themselves are a
handful of multi-row statements per batch, which is what makes group commit
pay off.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, or_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from channels.base import Channel
from hub.bulk import insert_of, insert_returning_ids
from hub.events import Event
from hub.identity import InvalidIdentity, display_name, normalize_email
from hub.ingest_context import REPLY_KEY, BatchContext, IngestResult, Prepared
from hub.models import ConversationStatus, CustomerKind, IdentityKind, UTCDateTime, utcnow
from hub.outbox import DELIVERY_EVENT, FINAL, OutboxStatus
from hub.sqlite_driver import execute_many
from hub.tables import (
    attachment_t,
    consent_t,
    conversation_t,
    customer_t,
    identity_t,
    interaction_t,
    outbox_t,
)
from routing.classify import BOUNCED_INTERACTION_KEY
from routing.dsn import RecipientStatus

UTCDT = UTCDateTime()


def _bind(name: str, type_: Any = None) -> Any:
    return bindparam(name, type_=type_)


# Built once: `execute_many` caches its compiled form per statement object.
_UPDATE_CUSTOMER_LAST_INBOUND = (
    update(customer_t)
    .where(customer_t.c.id == _bind("cid"))
    .values(
        last_inbound_at=case(
            (
                or_(
                    customer_t.c.last_inbound_at.is_(None),
                    customer_t.c.last_inbound_at < _bind("at", UTCDT),
                ),
                _bind("at", UTCDT),
            ),
            else_=customer_t.c.last_inbound_at,
        )
    )
)
_UPDATE_CONVERSATION_ACTIVITY = (
    update(conversation_t)
    .where(conversation_t.c.id == _bind("conv"))
    .values(
        status=ConversationStatus.OPEN.value,
        last_activity_at=case(
            (conversation_t.c.last_activity_at < _bind("at", UTCDT), _bind("at", UTCDT)),
            else_=conversation_t.c.last_activity_at,
        ),
    )
)

_EMAIL_IDENTITY = (identity_t.c.kind == IdentityKind.EMAIL.value) & (
    identity_t.c.value == _bind("addr")
)
_MARK_UNDELIVERABLE = (
    update(identity_t)
    .where(_EMAIL_IDENTITY)
    .values(undeliverable_at=_bind("marked_at", UTCDT), undeliverable_reason=_bind("why"))
)
_COUNT_SOFT_BOUNCE = (
    update(identity_t).where(_EMAIL_IDENTITY).values(soft_bounces=identity_t.c.soft_bounces + 1)
)
# Only rows that carry a mark: for the common case (nothing to clear) this is
# an index lookup that writes nothing, not a row update per inbound mail.
_CLEAR_MARK = (
    update(identity_t)
    .where(_EMAIL_IDENTITY)
    .where(or_(identity_t.c.undeliverable_at.is_not(None), identity_t.c.soft_bounces != 0))
    .values(undeliverable_at=None, undeliverable_reason=None, soft_bounces=0)
)
# Why a bounce changed nothing (in the bounce interaction's meta).
BOUNCE_IGNORED_KEY = "bounce_ignored"
_FAIL_BOUNCED_OUTBOX = (
    update(outbox_t)
    .where(outbox_t.c.interaction_id == _bind("iid"))
    .values(
        status=OutboxStatus.FAILED.value,
        last_error=_bind("error"),
        updated_at=_bind("now", UTCDT),
    )
)
BOUNCED = "bounced"
# A bounce does not overwrite a status that is already final (a message we
# never sent cannot bounce; a second report of the same bounce changes nothing).
_NOT_BOUNCEABLE = FINAL | {BOUNCED}
REASON_MAX = 500


def _meta(item: Prepared) -> dict[str, Any]:
    assert item.decision is not None
    meta = {**item.contact.metadata, **item.decision.meta}
    if item.decision.reply is not None:
        meta[REPLY_KEY] = item.decision.reply
    return meta


def _lead_row(item: Prepared, now: datetime, last_inbound_at: datetime | None) -> dict[str, Any]:
    return {
        "kind": CustomerKind.LEAD.value,
        "name": item.contact.sender_name or display_name(item.contact.sender),
        "company": "",
        "industry": "",
        "postal_code": "",
        "city": "",
        "country": "",
        "notes": "",
        "custom": {},
        "owner_id": None,
        "team_id": item.lead_team_id,
        "merged_into_id": None,
        "created_at": now,
        "updated_at": now,
        "last_inbound_at": last_inbound_at,
        "last_outbound_at": None,
    }


async def write_batch(conn: AsyncConnection, items: list[Prepared], ctx: BatchContext) -> None:
    """Insert leads, conversations and interactions for routed items; fill `item.result`."""
    now = utcnow()
    for item in items:
        item.events = []
    # Last-contact times move forward only (contacts may arrive out of order).
    # Keyed by the ids routing gave (placeholders < 0 for rows this batch
    # creates): new rows are inserted with their final time, so only rows that
    # existed before need the UPDATE at the end.
    latest_customer: dict[int, datetime] = {}
    latest_conv: dict[int, datetime] = {}
    for item in items:
        assert item.decision is not None
        at = item.contact.occurred_at
        cid = item.decision.customer.id
        # Machine mail (auto-replies, bounces: Decision.record_only) is history,
        # not contact: it must not look like the customer answered.
        if not item.decision.record_only:
            latest_customer[cid] = max(at, latest_customer.get(cid, at))
        if item.decision.conversation is not None:
            conv_id = item.decision.conversation.id
            latest_conv[conv_id] = max(at, latest_conv.get(conv_id, at))

    # 1. Leads: one per new identity (several contacts from one sender share it).
    new_leads: dict[int, Prepared] = {}
    for item in items:
        assert item.decision is not None
        if item.decision.customer.is_new:
            new_leads.setdefault(item.decision.customer.id, item)
    real_customer: dict[int, int] = {}
    if new_leads:
        placeholders = list(new_leads)
        ids = await insert_returning_ids(
            conn,
            customer_t,
            [_lead_row(new_leads[p], now, latest_customer.get(p)) for p in placeholders],
        )
        real_customer = dict(zip(placeholders, ids, strict=True))
        await execute_many(
            conn,
            insert_of(identity_t),
            [
                {
                    "customer_id": real_customer[p],
                    "kind": new_leads[p].identity.kind.value,
                    "value": new_leads[p].identity.value,
                    "raw": new_leads[p].identity.raw,
                    "primary": True,
                    "verified": new_leads[p].identity.verified,
                    "created_at": now,
                }
                for p in placeholders
            ],
        )

    def customer_id(item: Prepared) -> int:
        assert item.decision is not None
        cid = item.decision.customer.id
        return real_customer.get(cid, cid)

    # 2. Conversations the batch opens (placeholder ids < 0 from routing).
    new_convs: dict[int, Prepared] = {}
    for item in items:
        assert item.decision is not None
        conv = item.decision.conversation
        if conv is not None and conv.id < 0:
            new_convs.setdefault(conv.id, item)
    real_conv: dict[int, int] = {}
    if new_convs:
        placeholders = list(new_convs)
        ids = await insert_returning_ids(
            conn,
            conversation_t,
            [
                {
                    "customer_id": customer_id(new_convs[p]),
                    "channel": new_convs[p].contact.channel.value,
                    "subject": new_convs[p].decision.subject,  # type: ignore[union-attr]
                    "status": ConversationStatus.OPEN.value,
                    "assignee_id": new_convs[p].decision.assignee_id,  # type: ignore[union-attr]
                    "team_id": new_convs[p].decision.team_id,  # type: ignore[union-attr]
                    "created_at": now,
                    "last_activity_at": latest_conv[p],
                }
                for p in placeholders
            ],
        )
        real_conv = dict(zip(placeholders, ids, strict=True))

    def conversation_id(item: Prepared) -> int | None:
        assert item.decision is not None
        conv = item.decision.conversation
        if conv is None:
            return None
        return real_conv.get(conv.id, conv.id)

    # 3. The history entries themselves (a bounce first learns what it may act on:
    # its interaction's meta says so when the answer is "nothing").
    bounces = [_vet_bounce(item, ctx) for item in items]
    interaction_ids = await insert_returning_ids(
        conn,
        interaction_t,
        [
            {
                "customer_id": customer_id(item),
                "conversation_id": conversation_id(item),
                "channel": item.contact.channel.value,
                "direction": "in",
                "occurred_at": item.contact.occurred_at,
                "subject": item.contact.subject,
                "text": item.contact.text,
                "provider_id": item.contact.provider_id,
                "sender": item.contact.sender,
                "recipient": item.contact.recipient,
                "delivery_status": None,
                "meta": _meta(item),
                "author_id": None,
                "created_at": now,
            }
            for item in items
        ],
    )
    attachments = [
        {
            "interaction_id": iid,
            "filename": a.filename,
            "content_type": a.content_type,
            "size": a.size,
            "sha256": a.sha256,
            "url": a.url,
        }
        for item, iid in zip(items, interaction_ids, strict=True)
        for a in item.contact.attachments
    ]
    await execute_many(conn, insert_of(attachment_t), attachments)
    consents = [
        {
            "customer_id": customer_id(item),
            "channel": item.decision.consent.channel,
            "purpose": item.decision.consent.purpose,
            "state": item.decision.consent.state,
            "source": item.decision.consent.source,
            "recorded_at": item.contact.occurred_at,
        }
        for item in items
        if item.decision is not None and item.decision.consent is not None
    ]
    await execute_many(conn, insert_of(consent_t), consents)

    # 4. Email identities: what bounces say about an address, and what mail from it says.
    await _apply_bounces(conn, items, bounces, now)

    # 5. Last-contact times of rows that existed before the batch.
    customer_updates = [
        {"cid": k, "at": v} for k, v in latest_customer.items() if k not in new_leads
    ]
    await execute_many(conn, _UPDATE_CUSTOMER_LAST_INBOUND, customer_updates)
    conversation_updates = [
        {"conv": k, "at": v} for k, v in latest_conv.items() if k not in new_convs
    ]
    await execute_many(conn, _UPDATE_CONVERSATION_ACTIVITY, conversation_updates)

    for item, iid in zip(items, interaction_ids, strict=True):
        assert item.decision is not None
        item.result = IngestResult(
            interaction_id=iid,
            customer_id=customer_id(item),
            conversation_id=conversation_id(item),
            created_customer=new_leads.get(item.decision.customer.id) is item,
            team_id=item.decision.customer.team_id,
            reply=item.decision.reply,
        )


def _reason(r: RecipientStatus) -> str:
    return f"{r.status} {r.diagnostic}".strip()[:REASON_MAX]


def _email(address: str) -> str | None:
    try:
        return normalize_email(address).value
    except InvalidIdentity:
        return None  # matches no identity: those were all normalised when stored


@dataclass(frozen=True, slots=True)
class _Bounce:
    """What a bounce may act on: the message of ours it returns, the address that
    message went to, and what the report says about that address."""

    interaction_id: int
    address: str
    statuses: tuple[RecipientStatus, ...]

    @property
    def failed(self) -> list[RecipientStatus]:
        return [r for r in self.statuses if r.permanent]

    @property
    def delayed(self) -> bool:
        return any(r.temporary for r in self.statuses)


def _vet_bounce(item: Prepared, ctx: BatchContext) -> _Bounce | None:
    """The part of a bounce that concerns a message we sent, or None (then why, in its meta).

    Anyone can send a delivery report, and backscatter of spam that forged
    our domain names addresses we never wrote to: only a report that returns
    the Message-ID of one of our messages (routing found it) counts, and of
    its recipients only the one that message was sent to.
    """
    decision = item.decision
    assert decision is not None
    if decision.bounce is None:
        return None
    iid = decision.meta.get(BOUNCED_INTERACTION_KEY)
    recipient = ctx.sent_recipients.get(iid) if isinstance(iid, int) else None
    if iid is None or recipient is None:
        decision.meta[BOUNCE_IGNORED_KEY] = "no matching sent message"
        return None
    addr = _email(recipient)
    statuses = tuple(
        r
        for r in decision.bounce.recipients
        if addr is not None and addr in (_email(r.address), _email(r.original_address))
    )
    if addr is None or not statuses:
        decision.meta[BOUNCE_IGNORED_KEY] = "recipient not in the original message"
        return None
    assert isinstance(iid, int)
    return _Bounce(iid, addr, statuses)


async def _apply_bounces(
    conn: AsyncConnection, items: list[Prepared], bounces: list[_Bounce | None], now: datetime
) -> None:
    """Mark addresses that bounced, count temporary failures, clear marks a real mail refutes.

    Only what `_vet_bounce` kept counts. A permanent failure (5.x.x) marks
    the address undeliverable and the message bounced, a temporary one
    (4.x.x) only counts; a mail the address itself sent (not machine mail)
    proves it works again and clears both. Within one batch the later of a
    bounce and a mail for the same address wins, by the contacts' own times.
    """
    marks: list[dict[str, Any]] = []
    soft: list[dict[str, Any]] = []
    bounced_at: dict[str, datetime] = {}
    failed: dict[int, tuple[Prepared, list[RecipientStatus]]] = {}
    for item, bounce in zip(items, bounces, strict=True):
        if bounce is None or not (bounce.failed or bounce.delayed):
            continue
        at = item.contact.occurred_at
        bounced_at[bounce.address] = max(at, bounced_at.get(bounce.address, at))
        if bounce.failed:
            why = _reason(bounce.failed[0])
            marks.append({"addr": bounce.address, "marked_at": now, "why": why})
            failed.setdefault(bounce.interaction_id, (item, bounce.failed))
        else:
            soft.append({"addr": bounce.address})
    await execute_many(conn, _MARK_UNDELIVERABLE, marks)
    await execute_many(conn, _COUNT_SOFT_BOUNCE, soft)
    await _mark_bounced(conn, failed, now)
    clears: dict[str, None] = {}
    for item in items:
        decision = item.decision
        assert decision is not None
        if item.contact.channel is not Channel.EMAIL or decision.record_only:
            continue
        addr = item.identity.value
        bounced = bounced_at.get(addr)
        if bounced is None and decision.customer.is_new:
            continue  # its identity was inserted just now, with no mark
        if bounced is None or item.contact.occurred_at > bounced:
            clears[addr] = None
    await execute_many(conn, _CLEAR_MARK, [{"addr": a} for a in clears])


async def _mark_bounced(
    conn: AsyncConnection,
    failed: dict[int, tuple[Prepared, list[RecipientStatus]]],
    now: datetime,
) -> None:
    """Bounced messages' status and outbox rows; each bounce's event, published after the commit.

    Direct writes rather than hub/outbox.py's status ladder: a bounce is a
    verdict that arrives after "sent" or even "delivered" (the relay accepted
    the message; the recipient's server refused it later) and must win. Two
    statements for all of the batch's bounces, however many there are.
    """
    if not failed:
        return
    changed = {
        row.id: row
        for row in await conn.execute(
            update(interaction_t)
            .where(interaction_t.c.id.in_(sorted(failed)))
            .where(
                or_(
                    interaction_t.c.delivery_status.is_(None),
                    interaction_t.c.delivery_status.not_in(sorted(_NOT_BOUNCEABLE)),
                )
            )
            .values(delivery_status=BOUNCED)
            .returning(
                interaction_t.c.id, interaction_t.c.customer_id, interaction_t.c.conversation_id
            )
        )
    }
    outbox_rows: list[dict[str, Any]] = []
    for iid in sorted(changed):
        row = changed[iid]
        item, recipients = failed[iid]
        error = "bounced: " + "; ".join(f"{r.address} {_reason(r)}" for r in recipients)
        outbox_rows.append({"iid": iid, "error": error, "now": now})
        data = {
            "interaction_id": iid,
            "customer_id": row.customer_id,
            "conversation_id": row.conversation_id,
            "delivery_status": BOUNCED,
            "error_code": recipients[0].status,
        }
        assert item.decision is not None
        item.events.append(Event(DELIVERY_EVENT, data, team_id=item.decision.customer.team_id))
    await execute_many(conn, _FAIL_BOUNCED_OUTBOX, outbox_rows)
