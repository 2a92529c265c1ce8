"""One group-commit batch: prefetch what routing asks, decide, then write in bulk.

All per-contact decisions are made before the first write, so a contact that
fails validation or routing is dropped from the batch without leaving
anything behind. The writes themselves are a handful of multi-row statements
per batch, which is what makes group commit pay off.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from itertools import count
from typing import Any

from sqlalchemy import Table, bindparam, case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from channels.base import InboundContact
from hub.identity import NormalIdentity, display_name
from hub.models import (
    Attachment,
    Conversation,
    ConversationStatus,
    Customer,
    CustomerKind,
    Identity,
    Interaction,
    UTCDateTime,
    utcnow,
)
from hub.sqlite_driver import execute_many
from routing.base import ConversationRef, CustomerRef, Decision

ACTIVE_STATUSES = (ConversationStatus.OPEN.value, ConversationStatus.PENDING.value)

customer_t = Customer.__table__  # type: ignore[attr-defined]
identity_t = Identity.__table__  # type: ignore[attr-defined]
conversation_t = Conversation.__table__  # type: ignore[attr-defined]
interaction_t = Interaction.__table__  # type: ignore[attr-defined]
attachment_t = Attachment.__table__  # type: ignore[attr-defined]
UTCDT = UTCDateTime()
# Most values in one IN (...) list: far below SQLite's and asyncpg's parameter limits.
IN_CHUNK = 1000


def _bind(name: str, type_: Any = None) -> Any:
    return bindparam(name, type_=type_)


# Built once: `execute_many` caches its compiled form per statement object.
_INSERT = {
    t.name: t.insert()
    for t in (customer_t, identity_t, conversation_t, interaction_t, attachment_t)
}
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


@dataclass(frozen=True, slots=True)
class IngestResult:
    interaction_id: int
    customer_id: int
    conversation_id: int | None
    duplicate: bool = False
    created_customer: bool = False
    team_id: int | None = None


@dataclass(slots=True)
class Prepared:
    """A validated contact waiting for its batch."""

    contact: InboundContact
    identity: NormalIdentity
    lead_team_id: int
    decision: Decision | None = None
    result: IngestResult | None = None


@dataclass
class BatchContext:
    """Answers routing's questions for one batch, including what the batch itself adds.

    Ids of rows the batch will create are negative placeholders until the
    bulk insert returns the real ones.
    """

    conn: AsyncConnection
    open_by_customer: dict[tuple[int, str], ConversationRef] = field(default_factory=dict)
    # (channel, provider id) -> (occurred_at, interaction id, its conversation) for every
    # thread reference of the batch that exists, and which references were looked up.
    by_provider_id: dict[tuple[str, str], tuple[datetime, int, ConversationRef]] = field(
        default_factory=dict
    )
    prefetched_refs: set[tuple[str, str]] = field(default_factory=set)
    _placeholder: count[int] = field(default_factory=lambda: count(-1, -1))

    def placeholder(self) -> int:
        return next(self._placeholder)

    async def prefetch_open(self, customer_ids: set[int]) -> None:
        ids = [i for i in customer_ids if i > 0]
        if not ids:
            return
        rows = await self.conn.execute(
            select(
                conversation_t.c.id,
                conversation_t.c.customer_id,
                conversation_t.c.channel,
                conversation_t.c.assignee_id,
                conversation_t.c.team_id,
            )
            .where(conversation_t.c.customer_id.in_(ids))
            .where(conversation_t.c.status.in_(ACTIVE_STATUSES))
            .order_by(conversation_t.c.last_activity_at, conversation_t.c.id)
        )
        for row in rows:  # ascending, so the most recent one wins
            self.open_by_customer[(row.customer_id, row.channel)] = ConversationRef(
                row.id, row.assignee_id, row.team_id
            )

    async def open_conversation_of(self, customer_id: int, channel: str) -> ConversationRef | None:
        return self.open_by_customer.get((customer_id, channel))

    async def prefetch_refs(self, refs: set[tuple[str, str]]) -> None:
        """Conversations behind the batch's thread references: one query, not one per reply.

        The batch writes nothing before routing ends, so what is read here is
        exactly what a query per contact during routing would see.
        """
        by_channel: dict[str, list[str]] = defaultdict(list)
        for channel, provider_id in refs:
            by_channel[channel].append(provider_id)
        for channel, pids in by_channel.items():
            for i in range(0, len(pids), IN_CHUNK):
                rows = await self.conn.execute(
                    select(
                        interaction_t.c.provider_id,
                        interaction_t.c.occurred_at,
                        interaction_t.c.id.label("interaction_id"),
                        conversation_t.c.id,
                        conversation_t.c.assignee_id,
                        conversation_t.c.team_id,
                    )
                    .join(conversation_t, interaction_t.c.conversation_id == conversation_t.c.id)
                    .where(interaction_t.c.channel == channel)
                    .where(interaction_t.c.provider_id.in_(pids[i : i + IN_CHUNK]))
                )
                for row in rows:
                    self.by_provider_id[(channel, row.provider_id)] = (
                        row.occurred_at,
                        row.interaction_id,
                        ConversationRef(row.id, row.assignee_id, row.team_id),
                    )
        self.prefetched_refs |= refs

    async def conversation_by_provider_ids(
        self, channel: str, provider_ids: tuple[str, ...]
    ) -> ConversationRef | None:
        if not provider_ids:
            return None
        keys = [(channel, pid) for pid in provider_ids]
        if self.prefetched_refs.issuperset(keys):
            # The newest referenced interaction wins, as in the query below.
            found = [self.by_provider_id[k] for k in keys if k in self.by_provider_id]
            return max(found, key=lambda f: (f[0], f[1]))[2] if found else None
        row = (
            await self.conn.execute(
                select(conversation_t.c.id, conversation_t.c.assignee_id, conversation_t.c.team_id)
                .join(interaction_t, interaction_t.c.conversation_id == conversation_t.c.id)
                .where(interaction_t.c.channel == channel)
                .where(interaction_t.c.provider_id.in_(provider_ids))
                .order_by(interaction_t.c.occurred_at.desc(), interaction_t.c.id.desc())
                .limit(1)
            )
        ).first()
        return ConversationRef(row.id, row.assignee_id, row.team_id) if row else None


async def find_existing(
    conn: AsyncConnection, keys: set[tuple[str, str]]
) -> dict[tuple[str, str], IngestResult]:
    """Interactions already stored for these (channel, provider id) keys."""
    by_channel: dict[str, list[str]] = defaultdict(list)
    for channel, provider_id in keys:
        by_channel[channel].append(provider_id)
    found: dict[tuple[str, str], IngestResult] = {}
    for channel, pids in by_channel.items():
        rows = await conn.execute(
            select(
                interaction_t.c.id,
                interaction_t.c.customer_id,
                interaction_t.c.conversation_id,
                interaction_t.c.provider_id,
                customer_t.c.team_id,
            )
            .join(customer_t, customer_t.c.id == interaction_t.c.customer_id)
            .where(interaction_t.c.channel == channel)
            .where(interaction_t.c.provider_id.in_(pids))
        )
        for row in rows:
            found[(channel, row.provider_id)] = IngestResult(
                row.id, row.customer_id, row.conversation_id, duplicate=True, team_id=row.team_id
            )
    return found


async def match_customers(
    conn: AsyncConnection, identities: set[tuple[str, str]]
) -> dict[tuple[str, str], CustomerRef]:
    by_kind: dict[str, list[str]] = defaultdict(list)
    for kind, value in identities:
        by_kind[kind].append(value)
    found: dict[tuple[str, str], CustomerRef] = {}
    for kind, values in by_kind.items():
        rows = await conn.execute(
            select(identity_t.c.value, customer_t.c.id, customer_t.c.team_id, customer_t.c.owner_id)
            .join(customer_t, customer_t.c.id == identity_t.c.customer_id)
            .where(identity_t.c.kind == kind)
            .where(identity_t.c.value.in_(values))
        )
        for row in rows:
            found[(kind, row.value)] = CustomerRef(row.id, row.team_id, row.owner_id, False)
    return found


async def insert_returning_ids(
    conn: AsyncConnection, table: Table, rows: list[dict[str, Any]]
) -> list[int]:
    """Insert `rows` in one round trip where possible; their new ids, in row order.

    PostgreSQL: INSERT .. RETURNING, which SQLAlchemy keeps in parameter order
    with multi-row statements. SQLite cannot promise the order of a multi-row
    RETURNING, so SQLAlchemy would fall back to one INSERT per row (one worker
    thread round trip each: ~0.5 ms per contact). Instead the ids are chosen
    here: the batch's transaction started with BEGIN IMMEDIATE, so no other
    connection can insert before it commits, and max(id)+1, +2, ... are exactly
    the ids SQLite would have given (rowid tables without AUTOINCREMENT). Were
    that ever wrong, the primary key would refuse the row, not overwrite one.
    """
    if conn.dialect.name != "sqlite":
        result = await conn.execute(
            table.insert().returning(table.c.id, sort_by_parameter_order=True), rows
        )
        return [r.id for r in result]
    top = (await conn.execute(select(func.max(table.c.id)))).scalar()
    first = (top or 0) + 1
    ids = list(range(first, first + len(rows)))
    for row, new_id in zip(rows, ids, strict=True):
        row["id"] = new_id
    await execute_many(conn, _INSERT[table.name], rows)
    return ids


def _lead_row(item: Prepared, now: datetime, last_inbound_at: datetime) -> dict[str, Any]:
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
            [_lead_row(new_leads[p], now, latest_customer[p]) for p in placeholders],
        )
        real_customer = dict(zip(placeholders, ids, strict=True))
        await execute_many(
            conn,
            _INSERT["identity"],
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

    # 3. The history entries themselves.
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
                "meta": dict(item.contact.metadata),
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
    await execute_many(conn, _INSERT["attachment"], attachments)

    # 4. Last-contact times of rows that existed before the batch.
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
        )
