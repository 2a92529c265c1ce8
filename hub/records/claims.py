"""Identity claims: how creating a customer stays silent about other teams' customers.

When an email or phone given for a customer already belongs to a customer
the caller may not see, a 409 would tell them that the address is a
customer of another team. Instead the request succeeds like one with a free
identity; the identity stays with its holder (inbound mail still reaches
that record), and this one gets a claim, which its team sees on the record
like any identity. Supervisors list the claims (`GET
/api/v1/identity-claims`), admins see who holds the identity, and resolve
by merging the two records or dropping the claim. A holder the caller can
see is still a 409: it tells them nothing new and saves a duplicate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.records.auth import Principal
from hub.store.models import utcnow
from hub.store.tables import claim_t, customer_t, identity_t

# The claim's own columns; claim_view gives them the rest of an identity's shape.
CLAIMS_OF = (
    select(claim_t.c.customer_id, claim_t.c.kind, claim_t.c.value, claim_t.c.raw)
    .where(claim_t.c.customer_id.in_(bindparam("ids", expanding=True)))
    .order_by(claim_t.c.customer_id, claim_t.c.id)
)


@dataclass(frozen=True, slots=True)
class ClaimView:
    """A claim with the attributes serialize.identity_json reads."""

    customer_id: int
    kind: str
    value: str
    raw: str
    primary: bool
    # Claims come only from the API, where identities an agent enters count as verified.
    verified: bool = True
    undeliverable_at: None = None
    undeliverable_reason: None = None
    soft_bounces: int = 0


def claim_view(row: Any, *, primary: bool) -> Any:
    return ClaimView(row.customer_id, row.kind, row.value, row.raw, primary)


async def hidden_from(
    conn: AsyncConnection, principal: Principal, holders: Sequence[int]
) -> set[int]:
    """The holder customers the principal may not see (by team)."""
    if principal.is_admin or not holders:
        return set()
    rows = await conn.execute(
        select(customer_t.c.id, customer_t.c.team_id).where(customer_t.c.id.in_(list(holders)))
    )
    return {cid for cid, team in rows if team not in principal.team_ids}


async def set_claims(
    conn: AsyncConnection,
    customer_id: int,
    claims: Sequence[tuple[str, str, str]],
    keep: Sequence[tuple[str, str]],
    claimed_by: int | None,
) -> None:
    """The customer's claims become `claims` (kind, value, raw) plus those in `keep`."""
    wanted = {(k, v) for k, v, _ in claims} | set(keep)
    stale = delete(claim_t).where(claim_t.c.customer_id == customer_id)
    if wanted:
        stale = stale.where(
            ~or_(*[and_(claim_t.c.kind == k, claim_t.c.value == v) for k, v in wanted])
        )
    await conn.execute(stale)
    existing = {
        (k, v)
        for k, v in await conn.execute(
            select(claim_t.c.kind, claim_t.c.value).where(claim_t.c.customer_id == customer_id)
        )
    }
    for kind, value, raw in claims:
        if (kind, value) not in existing:
            await conn.execute(
                claim_t.insert().values(
                    customer_id=customer_id,
                    kind=kind,
                    value=value,
                    raw=raw,
                    claimed_by=claimed_by or None,
                    created_at=utcnow(),
                )
            )


async def list_claims(conn: AsyncConnection, principal: Principal) -> list[dict[str, Any]]:
    """Claims on customers of the principal's teams (all, for admins); the holder's id
    only for admins, who may see every record."""
    query = (
        select(claim_t, customer_t.c.team_id)
        .join(customer_t, customer_t.c.id == claim_t.c.customer_id)
        .order_by(claim_t.c.id)
    )
    if not principal.is_admin:
        query = query.where(customer_t.c.team_id.in_(sorted(principal.team_ids)))
    out = []
    for row in await conn.execute(query):
        item: dict[str, Any] = {
            "id": row.id,
            "customer_id": row.customer_id,
            "kind": row.kind,
            "value": row.value,
            "claimed_by": row.claimed_by,
            "created_at": row.created_at.isoformat(),
        }
        if principal.is_admin:  # the holder, for the merge
            item["held_by_customer_id"] = (
                await conn.execute(
                    select(identity_t.c.customer_id)
                    .where(identity_t.c.kind == row.kind)
                    .where(identity_t.c.value == row.value)
                )
            ).scalar()
        out.append(item)
    return out


_CUSTOMER_BY_CLAIM = (
    select(customer_t)
    .join(claim_t, claim_t.c.customer_id == customer_t.c.id)
    .where(claim_t.c.kind == bindparam("kind"))
    .where(claim_t.c.value == bindparam("value"))
    .where(customer_t.c.merged_into_id.is_(None))
    .order_by(customer_t.c.id)
)


async def customer_by_claim(
    conn: AsyncConnection, principal: Principal, kind: str, value: str
) -> Any:
    """A visible customer that claims (kind, value): the lookup of a claimed identity
    must find the caller's record as a free one would, not answer 404."""
    query = _CUSTOMER_BY_CLAIM
    params: dict[str, Any] = {"kind": kind, "value": value}
    if not principal.is_admin:
        query = query.where(customer_t.c.team_id.in_(bindparam("teams", expanding=True)))
        params["teams"] = sorted(principal.team_ids)
    return (await conn.execute(query, params)).first()


async def after_merge(conn: AsyncConnection, keep_id: int, other_id: int) -> None:
    """Claims follow the merge; a claim on an identity the survivor now holds is resolved."""
    await conn.execute(
        claim_t.update().where(claim_t.c.customer_id == other_id).values(customer_id=keep_id)
    )
    owned = select(identity_t.c.id).where(
        identity_t.c.customer_id == keep_id,
        identity_t.c.kind == claim_t.c.kind,
        identity_t.c.value == claim_t.c.value,
    )
    await conn.execute(delete(claim_t).where(claim_t.c.customer_id == keep_id, owned.exists()))
