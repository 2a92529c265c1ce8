"""The writes of one group-commit batch, after every contact in it was routed.

All per-contact decisions are made before the first write (see
hub/ingest/pipeline.py), so a contact that fails validation or routing is dropped from
the batch without leaving anything behind. The writes themselves are a
handful of multi-row statements per batch, which is what makes group commit
pay off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, or_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.ingest import pg
from hub.ingest.bounces import Bounce, apply_bounces, clear_marks, vet_bounce
from hub.ingest.context import REPLY_KEY, BatchContext, IngestResult, Prepared
from hub.records.identity import display_name
from hub.store.bulk import first_ids, insert_of, insert_returning_ids
from hub.store.db import is_postgres
from hub.store.models import ConversationStatus, CustomerKind, UTCDateTime, utcnow
from hub.store.sqlite_driver import defer_many
from hub.store.tables import (
    attachment_t,
    consent_t,
    conversation_t,
    customer_t,
    identity_t,
    interaction_t,
)

UTCDT = UTCDateTime()


def _bind(name: str, type_: Any = None) -> Any:
    return bindparam(name, type_=type_)


# Built once: `defer_many` caches its compiled form per statement object.
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


def _identity_row(item: Prepared, now: datetime) -> dict[str, Any]:
    return {
        "kind": item.identity.kind.value,
        "value": item.identity.value,
        "raw": item.identity.raw,
        "primary": True,
        "verified": item.identity.verified,
        "soft_bounces": 0,
        "created_at": now,
    }


def _conversation_row(
    item: Prepared, customer_id: int, last_activity_at: datetime, now: datetime
) -> dict[str, Any]:
    assert item.decision is not None
    return {
        "customer_id": customer_id,
        "channel": item.contact.channel.value,
        "subject": item.decision.subject,
        "status": ConversationStatus.OPEN.value,
        "assignee_id": item.decision.assignee_id,
        "team_id": item.decision.team_id,
        "created_at": now,
        "last_activity_at": last_activity_at,
    }


def _interaction_row(
    item: Prepared, customer_id: int, conversation_id: int | None, now: datetime
) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "conversation_id": conversation_id,
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


@dataclass
class _Plan:
    """What a batch writes, keyed by the ids routing gave (placeholders < 0 for rows the
    batch creates); the real ids once written."""

    items: list[Prepared]
    now: datetime
    # Last-contact times move forward only (contacts may arrive out of order). New
    # rows are inserted with their final time; only rows that existed before need
    # the UPDATE at the end.
    latest_customer: dict[int, datetime]
    latest_conv: dict[int, datetime]
    # One lead per new identity (several contacts from one sender share it), and the
    # conversations the batch opens.
    new_leads: dict[int, Prepared]
    new_convs: dict[int, Prepared]
    real_customer: dict[int, int] = field(default_factory=dict)
    real_conv: dict[int, int] = field(default_factory=dict)

    def customer_id(self, item: Prepared) -> int:
        assert item.decision is not None
        cid = item.decision.customer.id
        return self.real_customer.get(cid, cid)

    def conversation_id(self, item: Prepared) -> int | None:
        assert item.decision is not None
        conv = item.decision.conversation
        if conv is None:
            return None
        return self.real_conv.get(conv.id, conv.id)

    def touched(self) -> tuple[list[tuple[int, datetime]], list[tuple[int, datetime]]]:
        """Customers and conversations that existed before the batch, with their new
        times. In id order: two nodes' batches touching the same customers then lock
        them in the same order (in arrival order, PostgreSQL found deadlocks between
        two nodes). On PostgreSQL the match holds the customers already, and
        hub/ingest/pg.py locks the conversations in id order itself."""
        return (
            [(k, v) for k, v in sorted(self.latest_customer.items()) if k not in self.new_leads],
            [(k, v) for k, v in sorted(self.latest_conv.items()) if k not in self.new_convs],
        )


def _plan(items: list[Prepared], now: datetime) -> _Plan:
    latest_customer: dict[int, datetime] = {}
    latest_conv: dict[int, datetime] = {}
    new_leads: dict[int, Prepared] = {}
    new_convs: dict[int, Prepared] = {}
    for item in items:
        decision = item.decision
        assert decision is not None
        at = item.contact.occurred_at
        cid = decision.customer.id
        # Machine mail (auto-replies, bounces: Decision.record_only) is history,
        # not contact: it must not look like the customer answered.
        if not decision.record_only:
            latest_customer[cid] = max(at, latest_customer.get(cid, at))
        if decision.customer.is_new:
            new_leads.setdefault(cid, item)
        conv = decision.conversation
        if conv is not None:
            latest_conv[conv.id] = max(at, latest_conv.get(conv.id, at))
            if conv.id < 0:
                new_convs.setdefault(conv.id, item)
    return _Plan(items, now, latest_customer, latest_conv, new_leads, new_convs)


async def write_batch(conn: AsyncConnection, items: list[Prepared], ctx: BatchContext) -> None:
    """Insert leads, conversations and interactions for routed items; fill `item.result`."""
    for item in items:
        item.events = []
    plan = _plan(items, utcnow())
    # A bounce first learns what it may act on (its interaction's meta says so when
    # the answer is "nothing"); this reads only what routing prefetched.
    bounces = [vet_bounce(item, ctx) for item in items]
    if is_postgres(conn):
        interaction_ids = await _write_pg(conn, plan, bounces, ctx)
    else:
        interaction_ids = await _write_portable(conn, plan, bounces, ctx)
    for item, iid in zip(items, interaction_ids, strict=True):
        assert item.decision is not None
        item.result = IngestResult(
            interaction_id=iid,
            customer_id=plan.customer_id(item),
            conversation_id=plan.conversation_id(item),
            created_customer=plan.new_leads.get(item.decision.customer.id) is item,
            team_id=item.decision.customer.team_id,
            reply=item.decision.reply,
        )


async def _write_portable(
    conn: AsyncConnection, plan: _Plan, bounces: list[Bounce | None], ctx: BatchContext
) -> list[int]:
    """One statement per table (SQLite: most ride along with the next one); the new
    interactions' ids."""
    items, now, new_leads, new_convs = plan.items, plan.now, plan.new_leads, plan.new_convs
    # SQLite: the first new id of every table written below, in one statement.
    first = await first_ids(
        conn,
        [t for t, new in ((customer_t, new_leads), (conversation_t, new_convs)) if new]
        + [interaction_t],
    )
    # 1. Leads and their identities.
    if new_leads:
        placeholders = list(new_leads)
        ids = await insert_returning_ids(
            conn,
            customer_t,
            [_lead_row(new_leads[p], now, plan.latest_customer.get(p)) for p in placeholders],
            first.get(customer_t.name),
        )
        plan.real_customer = dict(zip(placeholders, ids, strict=True))
        await defer_many(
            conn,
            insert_of(identity_t),
            [
                {"customer_id": plan.real_customer[p], **_identity_row(new_leads[p], now)}
                for p in placeholders
            ],
        )
    # 2. The conversations the batch opens.
    if new_convs:
        placeholders = list(new_convs)
        rows = [
            _conversation_row(
                new_convs[p], plan.customer_id(new_convs[p]), plan.latest_conv[p], now
            )
            for p in placeholders
        ]
        ids = await insert_returning_ids(conn, conversation_t, rows, first.get(conversation_t.name))
        plan.real_conv = dict(zip(placeholders, ids, strict=True))
    # 3. The history entries themselves.
    interaction_ids = await insert_returning_ids(
        conn,
        interaction_t,
        [
            _interaction_row(item, plan.customer_id(item), plan.conversation_id(item), now)
            for item in items
        ],
        first.get(interaction_t.name),
    )
    await defer_many(conn, insert_of(attachment_t), _attachments(items, interaction_ids))
    await defer_many(conn, insert_of(consent_t), _consents(plan))
    # 4. Email identities: what bounces say about an address, and what mail from it says.
    cleared = await apply_bounces(conn, items, bounces, now, ctx.marked)
    await clear_marks(conn, cleared)
    # 5. Last-contact times of rows that existed before the batch.
    customers, conversations = plan.touched()
    await defer_many(
        conn, _UPDATE_CUSTOMER_LAST_INBOUND, [{"cid": k, "at": v} for k, v in customers]
    )
    await defer_many(
        conn, _UPDATE_CONVERSATION_ACTIVITY, [{"conv": k, "at": v} for k, v in conversations]
    )
    return interaction_ids


async def _write_pg(
    conn: AsyncConnection, plan: _Plan, bounces: list[Bounce | None], ctx: BatchContext
) -> list[int]:
    """PostgreSQL: the leads, identities, conversations and interactions and the closing
    UPDATEs in one statement (hub/ingest/pg.py); the new interactions' ids."""
    items, now, new_leads, new_convs = plan.items, plan.now, plan.new_leads, plan.new_convs
    # Rows of this statement are named by their position (see pg.write_rows).
    lead_at = {p: -(n + 1) for n, p in enumerate(new_leads)}
    conv_at = {p: -(n + 1) for n, p in enumerate(new_convs)}

    def customer_ref(item: Prepared) -> int:
        assert item.decision is not None
        cid = item.decision.customer.id
        return lead_at.get(cid, cid)

    def conversation_ref(item: Prepared) -> int | None:
        assert item.decision is not None
        conv = item.decision.conversation
        return None if conv is None else conv_at.get(conv.id, conv.id)

    customers, conversations = plan.touched()
    # Bounces that write (rare) run between the rows and the closing UPDATEs, as on
    # SQLite; without them apply_bounces writes nothing, only answers what to clear.
    bounce_writes = any(b is not None and (b.failed or b.delayed) for b in bounces)
    cleared = [] if bounce_writes else await apply_bounces(conn, items, bounces, now, ctx.marked)
    lead_ids, conv_ids, interaction_ids = await pg.write_rows(
        conn,
        [_lead_row(new_leads[p], now, plan.latest_customer.get(p)) for p in new_leads],
        [{"customer_id": lead_at[p], **_identity_row(new_leads[p], now)} for p in new_leads],
        [
            _conversation_row(new_convs[p], customer_ref(new_convs[p]), plan.latest_conv[p], now)
            for p in new_convs
        ],
        [_interaction_row(item, customer_ref(item), conversation_ref(item), now) for item in items],
        [] if bounce_writes else customers,
        [] if bounce_writes else conversations,
        cleared,
    )
    plan.real_customer = dict(zip(new_leads, lead_ids, strict=True))
    plan.real_conv = dict(zip(new_convs, conv_ids, strict=True))
    await pg.insert_rows(conn, attachment_t, _attachments(items, interaction_ids))
    await pg.insert_rows(conn, consent_t, _consents(plan))
    if bounce_writes:
        cleared = await apply_bounces(conn, items, bounces, now, ctx.marked)
        await pg.touch(conn, customers, conversations, cleared)
    return interaction_ids


def _attachments(items: list[Prepared], interaction_ids: list[int]) -> list[dict[str, Any]]:
    return [
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


def _consents(plan: _Plan) -> list[dict[str, Any]]:
    return [
        {
            "customer_id": plan.customer_id(item),
            "channel": item.decision.consent.channel,
            "purpose": item.decision.consent.purpose,
            "state": item.decision.consent.state,
            "source": item.decision.consent.source,
            "recorded_at": item.contact.occurred_at,
        }
        for item in plan.items
        if item.decision is not None and item.decision.consent is not None
    ]
