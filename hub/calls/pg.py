"""A call group's statements on PostgreSQL, fewer round trips than the portable ones.

On SQLite a statement is one hop to the driver's thread and the writes nobody
waits for ride along with the next one (`defer_many`); on PostgreSQL each
statement is a round trip through asyncpg, and a group of call events took 17
of them (bench/README.md, screen pop). At 200 calls/s the groups are mostly
of one call, so each trip is paid per call, and every trip lets the busy
event loop stretch the group's transaction. Here, on PostgreSQL only:

- the calls' rows and the PBX users their events name: one statement
  (`read_calls`), not two;
- the call rows inserted and updated and the history entries' summaries: one
  statement of data-modifying CTEs (`write_calls`), not up to three;
- the pops' caller cards: one statement with a row per customer carrying its
  tags, open conversations, recent history and open tasks as arrays of rows
  (`pop_cards_pg`), not five; the cards are the same as `pop_cards` gives.

Lists travel as PostgreSQL arrays (`= ANY`, `unnest`), so each statement has
one text and one prepared plan whatever the group's size (expanding IN lists
cost SQLAlchemy a rewrite per execution and asyncpg a plan per length).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import DateTime, Integer, String, Text

from hub.records.lookup import (  # one card shape
    OPEN_LIMIT,
    RECENT,
    PopCards,
    _empty,
    _known,
    _owner_of,
    _team_of,
)
from hub.store.models import ConversationStatus


class CallRow(NamedTuple):
    """A phone_call row as advance.py reads it (the columns `_record`/`_decide` use)."""

    provider: str
    call_id: str
    direction: str
    from_number: str
    to_number: str
    state: str
    ringing: list[str]
    answered_by: str | None
    answered_at: datetime | None
    ended_at: datetime | None
    cause: str | None
    started_at: datetime
    route_team_id: int | None


class UserRow(NamedTuple):
    id: int
    pbx_id: str | None
    username: str
    phone_extension: str | None
    phone: str | None


_READ = text(
    """
    SELECT
      ARRAY(
        SELECT ROW(c.provider, c.call_id, c.direction, c.from_number, c.to_number, c.state,
                   c.ringing, c.answered_by, c.answered_at, c.ended_at, c.cause, c.started_at,
                   c.route_team_id)
        FROM phone_call c
        JOIN unnest(:providers, :call_ids) AS k(provider, call_id)
          ON c.provider = k.provider AND c.call_id = k.call_id
      ) AS calls,
      ARRAY(
        SELECT ROW(u.id, u.pbx_id, u.username, u.phone_extension, u.phone)
        FROM app_user u
        WHERE u.active IS true
          AND (u.pbx_id = ANY(:names) OR u.username = ANY(:names)
               OR u.phone_extension = ANY(:names) OR u.phone = ANY(:phones))
        ORDER BY u.id
      ) AS users
    """
).bindparams(
    bindparam("providers", type_=ARRAY(String)),
    bindparam("call_ids", type_=ARRAY(String)),
    bindparam("names", type_=ARRAY(String)),
    bindparam("phones", type_=ARRAY(String)),
)


async def read_calls(
    conn: AsyncConnection, keys: Sequence[tuple[str, str]], names: list[str], phones: list[str]
) -> tuple[dict[tuple[str, str], CallRow], list[UserRow]]:
    """The calls' rows by (provider, call id), and the active users that `names` (PBX
    ids, usernames, extensions) or `phones` (E.164) may mean, by id (see map_users)."""
    row = (
        await conn.execute(
            _READ,
            {
                "providers": [k[0] for k in keys],
                "call_ids": [k[1] for k in keys],
                "names": names,
                "phones": phones,
            },
        )
    ).one()
    calls = {}
    for r in row.calls:
        # json inside a row comes as its text (asyncpg decodes no json itself)
        ringing = json.loads(r[6]) if isinstance(r[6], str) else r[6]
        call = CallRow._make((*r[:6], ringing, *r[7:]))
        calls[(call.provider, call.call_id)] = call
    return calls, [UserRow(*u) for u in row.users]


def _aware(value: datetime | None) -> datetime | None:
    """As UTCDateTime binds it (a naive time is UTC)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


# The inserts, the updates and the summaries are different rows: one snapshot serves
# them all (PostgreSQL runs every data-modifying CTE, referenced or not).
_WRITES = """
    WITH inserted AS (
      INSERT INTO phone_call (provider, call_id, direction, from_number, to_number, state,
                              customer_id, interaction_id, ringing, answered_by, cause,
                              started_at, answered_at, ended_at, route_team_id)
      SELECT provider, call_id, direction, from_number, to_number, state, customer_id,
             interaction_id, CAST(ringing AS json), answered_by, cause, started_at,
             answered_at, ended_at, route_team_id
      FROM unnest(:i_provider, :i_call_id, :i_direction, :i_from, :i_to, :i_state,
                  :i_customer, :i_interaction, :i_ringing, :i_answered_by, :i_cause,
                  :i_started, :i_answered_at, :i_ended, :i_route_team)
           AS i(provider, call_id, direction, from_number, to_number, state, customer_id,
                interaction_id, ringing, answered_by, cause, started_at, answered_at,
                ended_at, route_team_id)
    ), updated AS (
      UPDATE phone_call SET state = u.state, ringing = CAST(u.ringing AS json),
                            answered_by = u.answered_by, answered_at = u.answered_at,
                            ended_at = u.ended_at, cause = u.cause
      FROM unnest(:u_provider, :u_call_id, :u_state, :u_ringing, :u_answered_by,
                  :u_answered_at, :u_ended, :u_cause)
           AS u(provider, call_id, state, ringing, answered_by, answered_at, ended_at, cause)
      WHERE phone_call.provider = u.provider AND phone_call.call_id = u.call_id
    ), summarised AS (
      UPDATE interaction SET direction = m.direction, meta = CAST(m.meta AS json)
      FROM unnest(:m_id, :m_direction, :m_meta) AS m(id, direction, meta)
      WHERE interaction.id = m.id
    )
"""
_WRITE_BINDS = [
    bindparam(name, type_=ARRAY(type_))
    for name, type_ in (
        ("i_provider", String()),
        ("i_call_id", String()),
        ("i_direction", String()),
        ("i_from", String()),
        ("i_to", String()),
        ("i_state", String()),
        ("i_customer", Integer()),
        ("i_interaction", Integer()),
        ("i_ringing", Text()),
        ("i_answered_by", String()),
        ("i_cause", String()),
        ("i_started", DateTime(timezone=True)),
        ("i_answered_at", DateTime(timezone=True)),
        ("i_ended", DateTime(timezone=True)),
        ("i_route_team", Integer()),
        ("u_provider", String()),
        ("u_call_id", String()),
        ("u_state", String()),
        ("u_ringing", Text()),
        ("u_answered_by", String()),
        ("u_answered_at", DateTime(timezone=True)),
        ("u_ended", DateTime(timezone=True)),
        ("u_cause", String()),
        ("m_id", Integer()),
        ("m_direction", String()),
        ("m_meta", Text()),
    )
]
_WRITE = text(_WRITES + "SELECT 1").bindparams(*_WRITE_BINDS)


async def write_calls(
    conn: AsyncConnection,
    inserts: list[dict[str, Any]],
    updates: list[dict[str, Any]],
    metas: list[dict[str, Any]],
) -> None:
    """advance.py's `_INSERT_CALL`, `_UPDATE_CALL` and `_UPDATE_META` rows, in one statement."""
    if inserts or updates or metas:
        await conn.execute(_WRITE, _write_params(inserts, updates, metas))


def _write_params(
    inserts: list[dict[str, Any]], updates: list[dict[str, Any]], metas: list[dict[str, Any]]
) -> dict[str, Any]:
    def col(rows: list[dict[str, Any]], key: str) -> list[Any]:
        return [r[key] for r in rows]

    def dumped(rows: list[dict[str, Any]], key: str) -> list[str]:
        # As the JSON columns would encode them; cast back to json in the statement
        # (asyncpg would take a list inside the array for another dimension).
        return [json.dumps(r[key]) for r in rows]

    def times(rows: list[dict[str, Any]], key: str) -> list[Any]:
        return [_aware(r[key]) for r in rows]

    return {
        "i_provider": col(inserts, "provider"),
        "i_call_id": col(inserts, "call_id"),
        "i_direction": col(inserts, "direction"),
        "i_from": col(inserts, "from_number"),
        "i_to": col(inserts, "to_number"),
        "i_state": col(inserts, "state"),
        "i_customer": col(inserts, "customer_id"),
        "i_interaction": col(inserts, "interaction_id"),
        "i_ringing": dumped(inserts, "ringing"),
        "i_answered_by": col(inserts, "answered_by"),
        "i_cause": col(inserts, "cause"),
        "i_started": times(inserts, "started_at"),
        "i_answered_at": times(inserts, "answered_at"),
        "i_ended": times(inserts, "ended_at"),
        "i_route_team": col(inserts, "route_team_id"),
        "u_provider": col(updates, "k_provider"),
        "u_call_id": col(updates, "k_call_id"),
        "u_state": col(updates, "state"),
        "u_ringing": dumped(updates, "ringing"),
        "u_answered_by": col(updates, "answered_by"),
        "u_answered_at": times(updates, "answered_at"),
        "u_ended": times(updates, "ended_at"),
        "u_cause": col(updates, "cause"),
        "m_id": col(metas, "k_id"),
        "m_direction": col(metas, "direction"),
        "m_meta": dumped(metas, "meta"),
    }


class _Customer(NamedTuple):
    id: int
    name: str
    company: str
    kind: str
    team_id: int | None
    owner_id: int | None
    team_name: str | None
    owner_username: str | None
    owner_display_name: str | None


class _Conversation(NamedTuple):
    id: int
    channel: str
    subject: str
    status: str
    assignee_id: int | None
    last_activity_at: datetime | None


class _Interaction(NamedTuple):
    id: int
    conversation_id: int | None
    channel: str
    direction: str
    occurred_at: datetime
    subject: str
    text: str
    sender: str
    recipient: str
    delivery_status: str | None


class _Task(NamedTuple):
    id: int
    title: str
    due_at: datetime | None
    assignee_id: int | None


# The orders and limits of hub/records/lookup.py's `_MANY_PARTS` and `_MANY_TAGS`, per
# customer through its indexes (customer_id first), so the cards are the same.
_CARDS_SQL = f"""
    SELECT c.id, c.name, c.company, c.kind, c.team_id, c.owner_id,
           t.name AS team_name, u.username AS owner_username,
           u.display_name AS owner_display_name,
      ARRAY(SELECT g.tag FROM customer_tag g WHERE g.customer_id = c.id ORDER BY g.tag)
        AS tags,
      ARRAY(SELECT ROW(v.id, v.channel, v.subject, v.status, v.assignee_id, v.last_activity_at)
            FROM conversation v
            WHERE v.customer_id = c.id AND v.status != '{ConversationStatus.CLOSED.value}'
            ORDER BY v.last_activity_at DESC, v.id DESC LIMIT {OPEN_LIMIT}) AS conversations,
      ARRAY(SELECT ROW(i.id, i.conversation_id, i.channel, i.direction, i.occurred_at,
                       i.subject, i.text, i.sender, i.recipient, i.delivery_status)
            FROM interaction i
            WHERE i.customer_id = c.id
            ORDER BY i.occurred_at DESC, i.id DESC LIMIT {RECENT}) AS recent,
      ARRAY(SELECT ROW(k.id, k.title, k.due_at, k.assignee_id)
            FROM task k
            WHERE k.customer_id = c.id AND k.done IS false
            ORDER BY k.due_at IS NULL, k.due_at, k.id LIMIT {OPEN_LIMIT}) AS tasks
    FROM customer c
    LEFT OUTER JOIN team t ON t.id = c.team_id
    LEFT OUTER JOIN app_user u ON u.id = c.owner_id
    WHERE c.id = ANY(:ids)
"""
_IDS = bindparam("ids", type_=ARRAY(Integer))
_CARDS = text(_CARDS_SQL).bindparams(_IDS)
# The writes and the cards in one statement: the cards' read sees the database as it
# was before the statement (one snapshot), so it sees the history entries (stored by
# an earlier statement) but not the direction the summaries set (fixed in Python).
_WRITE_AND_CARDS = text(_WRITES + _CARDS_SQL).bindparams(*_WRITE_BINDS, _IDS)


async def pop_cards_pg(
    conn: AsyncConnection, wanted: Sequence[tuple[int, dict[str, Any]]]
) -> dict[tuple[int, int], PopCards]:
    """`hub.records.lookup.pop_cards` in one statement (PostgreSQL): the same cards, keyed
    the same way, by (index in `wanted`, customer id)."""
    ids = sorted({cid for cid, _ in wanted})
    if not ids:
        return {}
    return _cards(wanted, await conn.execute(_CARDS, {"ids": ids}), {})


async def write_calls_and_cards(
    conn: AsyncConnection,
    inserts: list[dict[str, Any]],
    updates: list[dict[str, Any]],
    metas: list[dict[str, Any]],
    wanted: Sequence[tuple[int, dict[str, Any]]],
) -> dict[tuple[int, int], PopCards]:
    """`write_calls`, then `pop_cards_pg`, in one statement: the cards are those a read
    after the writes gives (nothing else the cards show may change in between: the
    caller runs no other write, e.g. a call-back task's, between the two)."""
    ids = sorted({cid for cid, _ in wanted})
    if not ids:
        await write_calls(conn, inserts, updates, metas)
        return {}
    params = _write_params(inserts, updates, metas)
    params["ids"] = ids
    directions = {m["k_id"]: m["direction"] for m in metas}
    return _cards(wanted, await conn.execute(_WRITE_AND_CARDS, params), directions)


def _cards(
    wanted: Sequence[tuple[int, dict[str, Any]]], result: Any, directions: dict[int, str]
) -> dict[tuple[int, int], PopCards]:
    """The cards from the rows of `_CARDS_SQL`; `directions`: the history entries whose
    direction the same statement set (its read saw them before)."""
    rows = {r.id: r for r in result}
    cards: dict[tuple[int, int], PopCards] = {}
    for index, (cid, asked) in enumerate(wanted):
        r = rows.get(cid)
        if r is None:
            continue
        customer = _Customer(*r[:9])
        team = _team_of(customer)
        other = _empty("other_team", asked)
        other.update(customer={"name": customer.name}, team=team)
        recent = [_Interaction(*i) for i in r.recent]
        if directions:
            recent = [
                i._replace(direction=directions[i.id]) if i.id in directions else i for i in recent
            ]
        known = _known(
            asked, customer, team, _owner_of(customer), list(r.tags),
            [_Conversation(*v) for v in r.conversations], recent,
            [_Task(*k) for k in r.tasks],
        )  # fmt: skip
        cards[(index, cid)] = PopCards(known, other)
    return cards
