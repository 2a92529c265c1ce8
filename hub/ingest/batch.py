"""The writes of one group-commit batch, after every contact in it was routed.

All per-contact decisions are made before the first write (see
hub/ingest/pipeline.py), so a contact that fails validation or routing is dropped from
the batch without leaving anything behind. The writes themselves are a
handful of multi-row statements per batch, which is what makes group commit
pay off.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, or_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.ingest import pg
from hub.ingest.bounces import apply_bounces, clear_marks, vet_bounce
from hub.ingest.context import REPLY_KEY, BatchContext, IngestResult, Prepared, is_postgres
from hub.records.identity import display_name
from hub.store.bulk import first_ids, insert_of, insert_returning_ids
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


async def write_batch(conn: AsyncConnection, items: list[Prepared], ctx: BatchContext) -> None:
    """Insert leads, conversations and interactions for routed items; fill `item.result`."""
    now = utcnow()
    on_pg = is_postgres(conn)
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
    # Conversations the batch opens (placeholder ids < 0 from routing).
    new_convs: dict[int, Prepared] = {}
    for item in items:
        assert item.decision is not None
        conv = item.decision.conversation
        if conv is not None and conv.id < 0:
            new_convs.setdefault(conv.id, item)
    # SQLite: the first new id of every table written below, in one statement.
    first = await first_ids(
        conn,
        [t for t, new in ((customer_t, new_leads), (conversation_t, new_convs)) if new]
        + [interaction_t],
    )
    real_customer: dict[int, int] = {}
    if new_leads:
        placeholders = list(new_leads)
        lead_rows = [_lead_row(new_leads[p], now, latest_customer.get(p)) for p in placeholders]
        if on_pg:
            ids = await pg.insert_ids(conn, customer_t, lead_rows)
        else:
            ids = await insert_returning_ids(
                conn, customer_t, lead_rows, first.get(customer_t.name)
            )
        real_customer = dict(zip(placeholders, ids, strict=True))
        identity_rows = [
            {
                "customer_id": real_customer[p],
                "kind": new_leads[p].identity.kind.value,
                "value": new_leads[p].identity.value,
                "raw": new_leads[p].identity.raw,
                "primary": True,
                "verified": new_leads[p].identity.verified,
                "soft_bounces": 0,
                "created_at": now,
            }
            for p in placeholders
        ]
        if on_pg:
            await pg.insert_rows(conn, identity_t, identity_rows)
        else:
            await defer_many(conn, insert_of(identity_t), identity_rows)

    def customer_id(item: Prepared) -> int:
        assert item.decision is not None
        cid = item.decision.customer.id
        return real_customer.get(cid, cid)

    # 2. The conversations the batch opens.
    real_conv: dict[int, int] = {}
    if new_convs:
        placeholders = list(new_convs)
        conv_rows = [
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
        ]
        if on_pg:
            ids = await pg.insert_ids(conn, conversation_t, conv_rows)
        else:
            ids = await insert_returning_ids(
                conn, conversation_t, conv_rows, first.get(conversation_t.name)
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
    bounces = [vet_bounce(item, ctx) for item in items]
    interaction_rows = [
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
    ]
    if on_pg:
        interaction_ids = await pg.insert_ids(conn, interaction_t, interaction_rows)
    else:
        interaction_ids = await insert_returning_ids(
            conn, interaction_t, interaction_rows, first.get(interaction_t.name)
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
    if on_pg:
        await pg.insert_rows(conn, attachment_t, attachments)
    else:
        await defer_many(conn, insert_of(attachment_t), attachments)
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
    if on_pg:
        await pg.insert_rows(conn, consent_t, consents)
    else:
        await defer_many(conn, insert_of(consent_t), consents)

    # 4. Email identities: what bounces say about an address, and what mail from it says.
    cleared = await apply_bounces(conn, items, bounces, now, ctx.marked)

    # 5. Last-contact times of rows that existed before the batch. In id order:
    # two nodes' batches touching the same customers then lock them in the same
    # order (in arrival order, PostgreSQL found deadlocks between two nodes).
    customers = [(k, v) for k, v in sorted(latest_customer.items()) if k not in new_leads]
    conversations = [(k, v) for k, v in sorted(latest_conv.items()) if k not in new_convs]
    if on_pg:
        await pg.touch(conn, customers, conversations, cleared)
    else:
        await clear_marks(conn, cleared)
        await defer_many(
            conn, _UPDATE_CUSTOMER_LAST_INBOUND, [{"cid": k, "at": v} for k, v in customers]
        )
        await defer_many(
            conn, _UPDATE_CONVERSATION_ACTIVITY, [{"conv": k, "at": v} for k, v in conversations]
        )

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
