"""Merging two customer records that turned out to be one person.

Everything attached moves to the surviving record (identities, conversations,
history, tasks, consent, tags); empty fields are filled from the merged one.
The merged row stays as an empty tombstone whose `merged_into_id` makes its
old id keep resolving for API clients (a 308 redirect).
"""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.errors import Conflict, Invalid, Moved
from hub.records.access import Action, require
from hub.records.auth import Principal
from hub.records.claims import after_merge as claims_after_merge
from hub.records.customers import SCALAR_FIELDS, CustomerStore
from hub.store.models import (
    AuditEvent,
    Consent,
    Conversation,
    Customer,
    CustomerKind,
    CustomerTag,
    Identity,
    Interaction,
    Task,
    utcnow,
)

MOVED_TABLES: tuple[type[Identity | Conversation | Interaction | Task | Consent], ...] = (
    Identity,
    Conversation,
    Interaction,
    Task,
    Consent,
)


async def _get_live(store: CustomerStore, customer_id: int) -> Customer:
    try:
        return await store.get(customer_id)
    except Moved as exc:
        raise Conflict(f"customer {customer_id} was already merged into {exc.target_id}") from exc


async def merge_customers(
    session: AsyncSession, principal: Principal, region: str, keep_id: int, other_id: int
) -> Customer:
    require(principal, Action.MERGE_CUSTOMERS)
    # Lock both rows (in id order, so two merges cannot deadlock) before reading
    # them: on PostgreSQL, "A into B" and "B into A" at once would otherwise both
    # see two live records and leave two tombstones. An ingest batch that matched
    # either customer holds a share lock on it, so the merge waits for its commit
    # and moves what it stored. (SQLite runs one writer at a time anyway.)
    await session.exec(
        select(Customer.id)
        .where(col(Customer.id).in_(sorted({keep_id, other_id})))
        .order_by(col(Customer.id))
        .with_for_update()
    )
    store = CustomerStore(session, principal, region)
    keep = await _get_live(store, keep_id)
    other = await _get_live(store, other_id)
    if keep_id == other_id:
        raise Invalid("cannot merge a customer into itself")

    # The surviving record keeps its primary identities; the moved ones join as secondary.
    await session.exec(
        update(Identity).where(col(Identity.customer_id) == other_id).values(primary=False)
    )
    for table in MOVED_TABLES:
        await session.exec(
            update(table).where(col(table.customer_id) == other_id).values(customer_id=keep_id)
        )
    keep_tags = set(
        (
            await session.exec(select(CustomerTag.tag).where(CustomerTag.customer_id == keep_id))
        ).all()
    )
    other_tags = (
        await session.exec(select(CustomerTag).where(CustomerTag.customer_id == other_id))
    ).all()
    for tag in other_tags:
        if tag.tag not in keep_tags:
            session.add(CustomerTag(customer_id=keep_id, tag=tag.tag))
        await session.delete(tag)

    for field in SCALAR_FIELDS:
        if field in ("kind", "notes"):
            continue
        if not getattr(keep, field) and getattr(other, field):
            setattr(keep, field, getattr(other, field))
    if other.notes:
        keep.notes = f"{keep.notes}\n\n{other.notes}".strip()
    if CustomerKind.CUSTOMER.value in (keep.kind, other.kind):
        keep.kind = CustomerKind.CUSTOMER.value
    keep.custom = {**other.custom, **keep.custom}
    keep.owner_id = keep.owner_id if keep.owner_id is not None else other.owner_id
    for field in ("last_inbound_at", "last_outbound_at"):
        times = [t for t in (getattr(keep, field), getattr(other, field)) if t is not None]
        setattr(keep, field, max(times) if times else None)
    keep.updated_at = utcnow()

    # The tombstone keeps no personal data, only where it went.
    for field in SCALAR_FIELDS:
        if field != "kind":
            setattr(other, field, "")
    other.custom = {}
    other.merged_into_id = keep_id
    other.updated_at = utcnow()
    # Earlier tombstones pointing at `other` now point straight at `keep`.
    await session.exec(
        update(Customer)
        .where(col(Customer.merged_into_id) == other_id)
        .values(merged_into_id=keep_id)
    )
    await claims_after_merge(await session.connection(), keep_id, other_id)
    session.add_all([keep, other])
    session.add(
        AuditEvent(
            actor_id=principal.user_id or None,
            action="merge",
            entity="customer",
            entity_id=keep_id,
            customer_id=keep_id,
            detail={"merged": other_id},
        )
    )
    await session.flush()
    return keep
