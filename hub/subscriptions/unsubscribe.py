"""Turning a valid unsubscribe token into an opt-out in the consent record.

Idempotent: a second click (or a mail provider's one-click POST after the
customer's own click) finds the opt-out in force and records nothing more.
The channel is the identity's (an email address: email; a phone: sms), email
when the token names none. The purpose is the campaign's when its table says
(a `purpose` column on `campaign`), else "marketing" together with every
purpose the customer is opted in to on that channel: not knowing which list
they meant must never leave one of them sending.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import SQLModel

from hub.records.consent import record_consent
from hub.store.models import ConsentState, IdentityKind
from hub.store.tables import consent_t, customer_t, identity_t
from hub.subscriptions.tokens import TokenClaims

DEFAULT_PURPOSE = "marketing"
MAX_MERGE_HOPS = 20


@dataclass(frozen=True, slots=True)
class OptOut:
    customer_id: int | None  # None: the customer no longer exists (erased)
    channel: str
    purposes: tuple[str, ...]  # newly opted out (empty: all were already)
    team_id: int | None


async def _survivor(conn: AsyncConnection, customer_id: int) -> tuple[int, int | None] | None:
    """The customer, following merges to the record that holds their data now."""
    current = customer_id
    for _ in range(MAX_MERGE_HOPS):
        row = (
            await conn.execute(
                select(customer_t.c.merged_into_id, customer_t.c.team_id).where(
                    customer_t.c.id == current
                )
            )
        ).first()
        if row is None:
            return None
        if row.merged_into_id is None:
            return current, row.team_id
        current = row.merged_into_id
    return None


async def _channel(conn: AsyncConnection, identity_id: int | None) -> str:
    if identity_id is None:
        return "email"
    kind = (
        await conn.execute(select(identity_t.c.kind).where(identity_t.c.id == identity_id))
    ).scalar()
    return "sms" if kind == IdentityKind.PHONE.value else "email"


async def campaign_purpose(conn: AsyncConnection, campaign_id: int | None) -> str | None:
    campaign = SQLModel.metadata.tables.get("campaign")
    if campaign_id is None or campaign is None or "purpose" not in campaign.c:
        return None
    found = (
        await conn.execute(select(campaign.c.purpose).where(campaign.c.id == campaign_id))
    ).scalar()
    return str(found) if found else None


async def states_in_force(conn: AsyncConnection, customer_id: int, channel: str) -> dict[str, str]:
    rows = await conn.execute(
        select(consent_t.c.purpose, consent_t.c.state)
        .where(consent_t.c.customer_id == customer_id, consent_t.c.channel == channel)
        .order_by(consent_t.c.recorded_at.desc(), consent_t.c.id.desc())
    )
    newest: dict[str, str] = {}
    for purpose, state in rows:
        newest.setdefault(purpose, state)
    return newest


async def opt_out(conn: AsyncConnection, claims: TokenClaims, source: str) -> OptOut:
    found = await _survivor(conn, claims.customer_id)
    channel = await _channel(conn, claims.identity_id)
    if found is None:
        return OptOut(None, channel, (), None)
    customer_id, team_id = found
    in_force = await states_in_force(conn, customer_id, channel)
    purpose = await campaign_purpose(conn, claims.campaign_id)
    if purpose is not None:
        wanted = {purpose}
    else:
        opted_in = {p for p, s in in_force.items() if s == ConsentState.OPTED_IN.value}
        wanted = {DEFAULT_PURPOSE, *opted_in}
    changed = tuple(sorted(p for p in wanted if in_force.get(p) != ConsentState.OPTED_OUT.value))
    for p in changed:
        await record_consent(conn, customer_id, channel, p, ConsentState.OPTED_OUT.value, source)
    return OptOut(customer_id, channel, changed, team_id)
