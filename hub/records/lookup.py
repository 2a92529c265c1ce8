"""The caller card: everything an agent needs to greet a caller, built in one read.

`GET /api/v1/lookup` answers it and the event stream adds it to each
`call.ringing` frame (as `data["caller"]`, built for that recipient), so a
client that polls and one that listens see the same shape:

- `status: "known"`: the customer (name, company, kind, tags, owner, team),
  their open conversations, the last five interactions across channels and
  their open tasks;
- `status: "unknown"`: nobody holds the number (or address); the number in
  international format and its country, so the agent can still greet by
  region and create the lead;
- `status: "other_team"`: a customer of a team the asking user is not in.
  The card names that team and the customer's name only, never an id, the
  history, conversations or tasks: the agent can say "you are with our
  service team" and transfer, without seeing the other team's records.
  (Without it the agent would take the caller for unknown and try to create
  a duplicate.)

Core statements, not the ORM, and no permission re-check per part: the
customer row decides visibility once, and every other part hangs off it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import phonenumbers
from sqlalchemy import Table, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.errors import BadRequest, Invalid
from hub.records.auth import Principal
from hub.records.claims import customer_by_claim
from hub.records.identity import (
    InvalidIdentity,
    NormalIdentity,
    normalize_email,
    normalize_phone,
)
from hub.store.models import ConversationStatus, IdentityKind
from hub.store.read_many import fetch_many
from hub.store.tables import (
    conversation_t,
    customer_t,
    identity_t,
    interaction_t,
    tag_t,
    task_t,
    team_t,
    user_t,
)

RECENT = 5
OPEN_LIMIT = 20  # open conversations / tasks shown on a card; a pop is not a list view

# The customer with its team's name and its owner in one statement (outer joins:
# either may be missing); a screen pop's latency is mostly round trips.
_CARD = select(
    customer_t,
    team_t.c.name.label("team_name"),
    user_t.c.username.label("owner_username"),
    user_t.c.display_name.label("owner_display_name"),
)
_CARD_FROM = customer_t.outerjoin(team_t, team_t.c.id == customer_t.c.team_id).outerjoin(
    user_t, user_t.c.id == customer_t.c.owner_id
)
_BY_IDENTITY = (
    _CARD.select_from(_CARD_FROM.join(identity_t, identity_t.c.customer_id == customer_t.c.id))
    .where(identity_t.c.kind == bindparam("kind"))
    .where(identity_t.c.value == bindparam("value"))
)
_BY_ID = _CARD.select_from(_CARD_FROM).where(customer_t.c.id == bindparam("cid"))
_TAGS = select(tag_t.c.tag).where(tag_t.c.customer_id == bindparam("cid")).order_by(tag_t.c.tag)
_USER = select(user_t.c.id, user_t.c.username, user_t.c.display_name).where(
    user_t.c.id == bindparam("uid")
)
_TEAM = select(team_t.c.id, team_t.c.name).where(team_t.c.id == bindparam("tid"))
_RECENT = (
    select(interaction_t)
    .where(interaction_t.c.customer_id == bindparam("cid"))
    .order_by(interaction_t.c.occurred_at.desc(), interaction_t.c.id.desc())
    .limit(RECENT)
)
_OPEN_CONVERSATIONS = (
    select(conversation_t)
    .where(conversation_t.c.customer_id == bindparam("cid"))
    .where(conversation_t.c.status != ConversationStatus.CLOSED.value)
    .order_by(conversation_t.c.last_activity_at.desc(), conversation_t.c.id.desc())
    .limit(OPEN_LIMIT)
)
_OPEN_TASKS = (
    select(task_t)
    .where(task_t.c.customer_id == bindparam("cid"))
    .where(task_t.c.done.is_(False))
    .order_by(task_t.c.due_at.is_(None), task_t.c.due_at, task_t.c.id)
    .limit(OPEN_LIMIT)
)


def query_phone(raw: str | None) -> str | None:
    """`?phone=+4930…` sent unencoded (as PBX scripts do) arrives as " 4930…": that
    leading space was a plus sign. Nothing else in a phone number starts with a space."""
    if raw is None:
        return None
    if raw.startswith(" ") and raw[1:2].isdigit():
        return "+" + raw[1:]
    return raw


def _ts(value: datetime | None) -> str | None:
    if value is None:
        return None
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat().replace("+00:00", "Z")


def _number(ident: NormalIdentity) -> dict[str, Any]:
    """The asked number in international format and its country (ISO 3166 code)."""
    if ident.kind is not IdentityKind.PHONE:
        return {"email": ident.value}
    if not ident.verified:
        return {"phone": ident.value, "international": ident.value, "country": None}
    number = phonenumbers.parse(ident.value)
    return {
        "phone": ident.value,
        "international": phonenumbers.format_number(
            number, phonenumbers.PhoneNumberFormat.INTERNATIONAL
        ),
        "country": phonenumbers.region_code_for_number(number),
    }


def _identity(phone: str | None, email: str | None, region: str) -> NormalIdentity:
    if (phone is None) == (email is None):
        raise BadRequest("give exactly one of phone or email")
    try:
        return normalize_phone(phone, region) if phone is not None else normalize_email(email or "")
    except InvalidIdentity as exc:
        raise Invalid(str(exc)) from exc


def _empty(status: str, asked: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": status,
        **asked,
        "customer": None,
        "team": None,
        "open_conversations": [],
        "recent_interactions": [],
        "open_tasks": [],
    }


async def caller_card(
    conn: AsyncConnection,
    principal: Principal,
    *,
    region: str,
    phone: str | None = None,
    email: str | None = None,
    customer_id: int | None = None,
) -> dict[str, Any]:
    """The card for one phone number or email address (or a customer id the caller
    already resolved, e.g. a call's; `phone` then only fills in the number)."""
    if customer_id is not None:
        asked = {}
        if phone:
            try:
                asked = _number(_identity(phone, None, region))
            except (BadRequest, Invalid):
                asked = {"phone": phone}  # "anonymous" and the like: the known customer still pops
        customer = (await conn.execute(_BY_ID, {"cid": customer_id})).first()
        joined = True
    else:
        ident = _identity(phone, email, region)
        asked = _number(ident)
        customer = (
            await conn.execute(_BY_IDENTITY, {"kind": ident.kind.value, "value": ident.value})
        ).first()
        joined = True
        if customer is None or not (principal.is_admin or customer.team_id in principal.team_ids):
            # The caller's team gave this identity to a record of its own while a hidden
            # record holds it (an identity claim, claims.py): that record is theirs to see.
            claimant = await customer_by_claim(conn, principal, ident.kind.value, ident.value)
            if claimant is not None:
                customer, joined = claimant, False  # a bare customer row: no joined names
    if customer is None:
        return _empty("unknown", asked)
    team = None
    if joined:
        team = _team_of(customer)
    elif customer.team_id is not None:
        row = (await conn.execute(_TEAM, {"tid": customer.team_id})).first()
        team = {"id": row.id, "name": row.name} if row is not None else None
    if not (principal.is_admin or customer.team_id in principal.team_ids):
        card = _empty("other_team", asked)
        card.update(customer={"name": customer.name}, team=team)
        return card
    cid = customer.id
    owner = None
    if joined:
        owner = _owner_of(customer)
    elif customer.owner_id is not None:
        row = (await conn.execute(_USER, {"uid": customer.owner_id})).first()
        if row is not None:
            owner = {"id": row.id, "username": row.username, "display_name": row.display_name}
    # One trip on SQLite for the four parts (fetch_many): they are a third of a lookup's time.
    by_cid = {"cid": cid}
    tag_rows, conversations, recent, tasks = await fetch_many(
        conn,
        [(_TAGS, by_cid), (_OPEN_CONVERSATIONS, by_cid), (_RECENT, by_cid), (_OPEN_TASKS, by_cid)],
    )
    tags = [r.tag for r in tag_rows]
    return _known(asked, customer, team, owner, tags, conversations, recent, tasks)


def _team_of(customer: Any) -> dict[str, Any] | None:
    """The team part of a card from a row of _CARD (None: no team, or it is gone)."""
    if customer.team_id is None or customer.team_name is None:
        return None
    return {"id": customer.team_id, "name": customer.team_name}


def _owner_of(customer: Any) -> dict[str, Any] | None:
    """The owner part of a card from a row of _CARD (None: no owner, or it is gone)."""
    if customer.owner_id is None or customer.owner_username is None:
        return None
    return {
        "id": customer.owner_id,
        "username": customer.owner_username,
        "display_name": customer.owner_display_name,
    }


def _known(
    asked: dict[str, Any],
    customer: Any,
    team: dict[str, Any] | None,
    owner: dict[str, Any] | None,
    tags: list[str],
    conversations: Sequence[Any],
    recent: Sequence[Any],
    tasks: Sequence[Any],
) -> dict[str, Any]:
    cid = customer.id
    return {
        "status": "known",
        **asked,
        "customer": {
            "id": cid,
            "name": customer.name,
            "company": customer.company,
            "kind": customer.kind,
            "tags": tags,
            "owner": owner,
            "team_id": customer.team_id,
        },
        "team": team,
        "open_conversations": [
            {
                "id": c.id,
                "channel": c.channel,
                "subject": c.subject,
                "status": c.status,
                "assignee_id": c.assignee_id,
                "last_activity_at": _ts(c.last_activity_at),
            }
            for c in conversations
        ],
        "recent_interactions": [
            {
                "id": i.id,
                "conversation_id": i.conversation_id,
                "channel": i.channel,
                "direction": i.direction,
                "occurred_at": _ts(i.occurred_at),
                "subject": i.subject,
                "text": i.text,
                "sender": i.sender,
                "recipient": i.recipient,
                "delivery_status": i.delivery_status,
            }
            for i in recent
        ],
        "open_tasks": [
            {"id": t.id, "title": t.title, "due_at": _ts(t.due_at), "assignee_id": t.assignee_id}
            for t in tasks
        ],
    }


# -- many cards in one read: the pops of a stream batch -------------------------------------


@dataclass(frozen=True, slots=True)
class PopCards:
    """One customer's cards for a pop: for users who may see the customer, and for others."""

    known: dict[str, Any]
    other_team: dict[str, Any]


def asked_number(phone: str | None, region: str) -> dict[str, Any]:
    """The number part of a card for a pop whose customer is known (see caller_card)."""
    if not phone:
        return {}
    try:
        return _number(_identity(phone, None, region))
    except (BadRequest, Invalid):
        return {"phone": phone}


def _top(table: Table, order: list[Any], limit: int, *where: Any) -> Any:
    """The first `limit` rows per customer of `ids` in `order` (one statement for all)."""
    rank = func.row_number().over(partition_by=table.c.customer_id, order_by=order).label("rank")
    ranked = select(table, rank).where(table.c.customer_id.in_(_IDS), *where).subquery()
    return (
        select(ranked).where(ranked.c.rank <= limit).order_by(ranked.c.customer_id, ranked.c.rank)
    )


# Built once: building and keying these per pop cost more than SQLite's answers.
_IDS: Any = bindparam("ids", expanding=True)
# With the team's name and the owner, as _BY_ID: two round trips fewer than reading them apart.
_MANY_CUSTOMERS = _CARD.select_from(_CARD_FROM).where(customer_t.c.id.in_(_IDS))
_MANY_TAGS = (
    select(tag_t.c.customer_id, tag_t.c.tag)
    .where(tag_t.c.customer_id.in_(_IDS))
    .order_by(tag_t.c.customer_id, tag_t.c.tag)
)
_MANY_PARTS = {
    "conv": _top(
        conversation_t,
        [conversation_t.c.last_activity_at.desc(), conversation_t.c.id.desc()],
        OPEN_LIMIT,
        conversation_t.c.status != ConversationStatus.CLOSED.value,
    ),
    "recent": _top(
        interaction_t, [interaction_t.c.occurred_at.desc(), interaction_t.c.id.desc()], RECENT
    ),
    "tasks": _top(
        task_t,
        [task_t.c.due_at.is_(None), task_t.c.due_at, task_t.c.id],
        OPEN_LIMIT,
        task_t.c.done.is_(False),
    ),
}


async def pop_cards(
    conn: AsyncConnection, wanted: Sequence[tuple[int, dict[str, Any]]]
) -> dict[tuple[int, int], PopCards]:
    """Cards for (customer id, asked number) pairs, keyed by (index in `wanted`, customer id):
    the same shapes as `caller_card` gives by customer id, in five statements for all."""
    ids = sorted({cid for cid, _ in wanted})
    if not ids:
        return {}
    customers = {r.id: r for r in await conn.execute(_MANY_CUSTOMERS, {"ids": ids})}
    tags: dict[int, list[str]] = {}
    for r in await conn.execute(_MANY_TAGS, {"ids": ids}):
        tags.setdefault(r.customer_id, []).append(r.tag)
    parts: dict[str, dict[int, list[Any]]] = {name: {} for name in _MANY_PARTS}
    for name, statement in _MANY_PARTS.items():
        for r in await conn.execute(statement, {"ids": ids}):
            parts[name].setdefault(r.customer_id, []).append(r)
    cards: dict[tuple[int, int], PopCards] = {}
    for index, (cid, asked) in enumerate(wanted):
        customer = customers.get(cid)
        if customer is None:
            continue
        team = _team_of(customer)
        owner = _owner_of(customer)
        other = _empty("other_team", asked)
        other.update(customer={"name": customer.name}, team=team)
        known = _known(
            asked, customer, team, owner, tags.get(cid, []), parts["conv"].get(cid, []),
            parts["recent"].get(cid, []), parts["tasks"].get(cid, []),
        )  # fmt: skip
        cards[(index, cid)] = PopCards(known, other)
    return cards
