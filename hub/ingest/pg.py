"""An ingest batch's writes on PostgreSQL: one statement each, whatever the batch's size.

Through Core, asyncpg runs a multi-row write as executemany (one execution per
row, each planned and run on its own) and a multi-row INSERT .. RETURNING as a
VALUES list whose SQL text differs with every row count (a new prepared
statement, planned again, in nearly every batch). Here the rows travel as one
array per column and `unnest` turns them back into rows: one text, one plan,
one round trip per table; and the batch's closing UPDATEs (last contact of
customers, activity of conversations, bounce marks cleared) are one statement
of data-modifying CTEs. SQLite keeps the portable statements (hub/ingest/batch.py),
where a statement costs no network round trip and the writes ride along with
the next one (`defer_many`). tests/ingest/test_pg_writes.py checks that both
store the same rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BindParameter, Table, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.types import Integer, Text

from hub.store.columns import UTCDateTime
from hub.store.models import ConversationStatus, IdentityKind
from hub.store.tables import conversation_t, customer_t, identity_t, interaction_t

_INSERTS: dict[tuple[str, tuple[str, ...], bool], TextClause] = {}


def _insert(conn: AsyncConnection, table: Table, keys: tuple[str, ...], returning: bool) -> Any:
    """INSERT of `table`'s columns `keys` from one array per column (`c0`, `c1`, ...), in
    the arrays' order; JSON values travel as their text and are cast back."""
    cache_key = (table.name, keys, returning)
    if cache_key not in _INSERTS:
        quote = conn.dialect.identifier_preparer.quote
        binds, values = [], []
        for i, key in enumerate(keys):
            column = table.c[key]
            is_json = isinstance(column.type, JSON)
            binds.append(bindparam(f"c{i}", type_=ARRAY(Text() if is_json else column.type)))
            values.append(f"CAST(u.c{i} AS json)" if is_json else f"u.c{i}")
        names = ", ".join(f"c{i}" for i in range(len(keys)))
        # ORDER BY the arrays' position: the ids a serial key gives then ascend in row
        # order, which is how SQLAlchemy matches INSERT .. RETURNING rows to its
        # parameters on PostgreSQL too (insertmanyvalues' implicit sentinel).
        sql = (
            f"INSERT INTO {quote(table.name)} ({', '.join(quote(k) for k in keys)}) "
            f"SELECT {', '.join(values)} "
            f"FROM unnest({', '.join(f':c{i}' for i in range(len(keys)))}) "
            f"WITH ORDINALITY AS u({names}, ord) ORDER BY u.ord"
            + (" RETURNING id" if returning else "")
        )
        _INSERTS[cache_key] = text(sql).bindparams(*binds)
    return _INSERTS[cache_key]


def _columns(table: Table, keys: tuple[str, ...], rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for i, key in enumerate(keys):
        values = [r[key] for r in rows]
        if isinstance(table.c[key].type, JSON):
            # As the JSON column would encode them (json.dumps); an array of json would
            # take a list inside it for another dimension.
            values = [json.dumps(v) for v in values]
        params[f"c{i}"] = values
    return params


async def insert_ids(
    conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]
) -> list[int]:
    """`hub.store.bulk.insert_returning_ids` on PostgreSQL: the new ids, in row order. Every
    row has the keys of the first; columns not named take their server defaults."""
    if not rows:
        return []
    keys = tuple(rows[0])
    result = await conn.execute(_insert(conn, table, keys, True), _columns(table, keys, rows))
    return sorted(r[0] for r in result)


async def insert_rows(conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """A multi-row INSERT without RETURNING, as one statement."""
    if rows:
        keys = tuple(rows[0])
        await conn.execute(_insert(conn, table, keys, False), _columns(table, keys, rows))


_TOUCH_CTES = f"""
    touched_customers AS (
      UPDATE customer
      SET last_inbound_at = CASE
        WHEN customer.last_inbound_at IS NULL OR customer.last_inbound_at < u.at THEN u.at
        ELSE customer.last_inbound_at END
      FROM unnest(:customer_ids, :customer_ats) AS u(id, at)
      WHERE customer.id = u.id
    ), locked AS MATERIALIZED (
      -- In id order, as the portable UPDATEs run: two nodes' batches touching the
      -- same conversations then wait for each other instead of deadlocking.
      SELECT id FROM conversation WHERE id = ANY(:conversation_ids)
      ORDER BY id FOR NO KEY UPDATE
    ), touched_conversations AS (
      UPDATE conversation
      SET status = '{ConversationStatus.OPEN.value}',
          last_activity_at = CASE
            WHEN conversation.last_activity_at < u.at THEN u.at
            ELSE conversation.last_activity_at END
      FROM locked JOIN unnest(:conversation_ids, :conversation_ats) AS u(id, at)
        ON u.id = locked.id
      WHERE conversation.id = locked.id
    ), cleared AS (
      UPDATE identity
      SET undeliverable_at = NULL, undeliverable_reason = NULL, soft_bounces = 0
      WHERE identity.kind = '{IdentityKind.EMAIL.value}' AND identity.value = ANY(:cleared)
        AND (identity.undeliverable_at IS NOT NULL OR identity.soft_bounces != 0)
    )
"""
_TOUCH_BINDS: list[BindParameter[Any]] = [
    bindparam("customer_ids", type_=ARRAY(Integer())),
    bindparam("customer_ats", type_=ARRAY(UTCDateTime())),
    bindparam("conversation_ids", type_=ARRAY(Integer())),
    bindparam("conversation_ats", type_=ARRAY(UTCDateTime())),
    bindparam("cleared", type_=ARRAY(Text())),
]
_TOUCH = text(f"WITH {_TOUCH_CTES} SELECT 1").bindparams(*_TOUCH_BINDS)


def _touch_params(
    customers: Sequence[tuple[int, datetime]],
    conversations: Sequence[tuple[int, datetime]],
    cleared: Sequence[str],
) -> dict[str, Any]:
    return {
        "customer_ids": [c for c, _ in customers],
        "customer_ats": [at for _, at in customers],
        "conversation_ids": [c for c, _ in conversations],
        "conversation_ats": [at for _, at in conversations],
        "cleared": list(cleared),
    }


async def touch(
    conn: AsyncConnection,
    customers: Sequence[tuple[int, datetime]],
    conversations: Sequence[tuple[int, datetime]],
    cleared: Sequence[str],
) -> None:
    """batch.py's closing writes in one statement: customers' last inbound contact and
    conversations' activity moved forward (never back) to the given times, conversations
    (re)opened, and the bounce marks of `cleared` email addresses cleared."""
    if not (customers or conversations or cleared):
        return
    await conn.execute(_TOUCH, _touch_params(customers, conversations, cleared))


# The columns batch.py gives each table's rows, in the order they travel.
LEAD_KEYS = (
    "kind", "name", "company", "industry", "postal_code", "city", "country", "notes",
    "custom", "owner_id", "team_id", "merged_into_id", "created_at", "updated_at",
    "last_inbound_at", "last_outbound_at",
)  # fmt: skip
IDENTITY_KEYS = ("kind", "value", "raw", "primary", "verified", "soft_bounces", "created_at")
CONVERSATION_KEYS = (
    "customer_id", "channel", "subject", "status", "assignee_id", "team_id", "created_at",
    "last_activity_at",
)  # fmt: skip
INTERACTION_KEYS = (
    "customer_id", "conversation_id", "channel", "direction", "occurred_at", "subject",
    "text", "provider_id", "sender", "recipient", "delivery_status", "meta", "author_id",
    "created_at",
)  # fmt: skip
# Columns that may name a row of this same statement instead: (its 1-based position
# among the leads or conversations, in a `<prefix>_<column>_new` array; NULL: the id given).
_NEW = {"customer_id": "leads_n", "conversation_id": "conversations_n"}


def _rows_cte(
    dialect: Any, name: str, table: Table, keys: tuple[str, ...], prefix: str, extra: str = ""
) -> tuple[str, list[BindParameter[Any]]]:
    """`name AS (INSERT INTO table .. SELECT .. FROM unnest(..) ORDER BY ord RETURNING id)`."""
    quote = dialect.identifier_preparer.quote
    binds: list[BindParameter[Any]] = []
    arrays, aliases, values, joins = [], [], [], []
    for i, key in enumerate(keys):
        column = table.c[key]
        is_json = isinstance(column.type, JSON)
        binds.append(bindparam(f"{prefix}{i}", type_=ARRAY(Text() if is_json else column.type)))
        arrays.append(f":{prefix}{i}")
        aliases.append(f"c{i}")
        value = f"CAST(u.c{i} AS json)" if is_json else f"u.c{i}"
        if key in _NEW and table is not identity_t:
            numbered = _NEW[key]
            binds.append(bindparam(f"{prefix}{i}_new", type_=ARRAY(Integer())))
            arrays.append(f":{prefix}{i}_new")
            aliases.append(f"n{i}")
            joins.append(f"LEFT JOIN {numbered} j{i} ON j{i}.n = u.n{i}")
            value = f"COALESCE(j{i}.id, u.c{i})"
        values.append(value)
    columns = ", ".join(quote(k) for k in keys)
    sql = (
        f"{name} AS (INSERT INTO {quote(table.name)} ({extra}{columns}) "
        f"SELECT {'leads_n.id, ' if extra else ''}{', '.join(values)} "
        f"FROM unnest({', '.join(arrays)}) WITH ORDINALITY AS u({', '.join(aliases)}, ord) "
        f"{'JOIN leads_n ON leads_n.n = u.ord ' if extra else ''}{' '.join(joins)} "
        f"ORDER BY u.ord RETURNING id)"
    )
    return sql, binds


_WRITE: list[Any] = []


def _write_statement(dialect: Any) -> Any:
    """Leads, their identities, conversations and history entries, then the closing
    UPDATEs (see `touch`), in one statement; it answers the new ids of each table in
    row order. ORDER BY the arrays' position makes a serial key's ids ascend in row
    order (as for `insert_ids`), so the n-th smallest new id is the n-th row's."""
    if not _WRITE:
        parts: list[str] = []
        binds: list[BindParameter[Any]] = []
        for name, table, keys, prefix, extra in (
            ("leads", customer_t, LEAD_KEYS, "l", ""),
            ("identities", identity_t, IDENTITY_KEYS, "i", "customer_id, "),
            ("conversations", conversation_t, CONVERSATION_KEYS, "v", ""),
            ("interactions", interaction_t, INTERACTION_KEYS, "h", ""),
        ):
            sql, more = _rows_cte(dialect, name, table, keys, prefix, extra)
            parts.append(sql)
            binds += more
            if name in ("leads", "conversations"):
                parts.append(
                    f"{name}_n AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM {name})"
                )
        sql = (
            "WITH " + ",\n".join(parts) + ",\n" + _TOUCH_CTES
            + "SELECT ARRAY(SELECT id FROM leads ORDER BY id) AS leads,"
            " ARRAY(SELECT id FROM conversations ORDER BY id) AS conversations,"
            " ARRAY(SELECT id FROM interactions ORDER BY id) AS interactions"
        )  # fmt: skip
        _WRITE.append(text(sql).bindparams(*binds, *_TOUCH_BINDS))
    return _WRITE[0]


def _arrays(
    prefix: str, table: Table, keys: tuple[str, ...], rows: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for i, key in enumerate(keys):
        values = [r[key] for r in rows]
        if isinstance(table.c[key].type, JSON):
            values = [json.dumps(v) for v in values]
        elif key in _NEW and table is not identity_t:
            # A placeholder (< 0) names the row `-value` of this statement's leads or
            # conversations; see BatchRows.
            params[f"{prefix}{i}_new"] = [-v if v is not None and v < 0 else None for v in values]
            values = [None if v is not None and v < 0 else v for v in values]
        params[f"{prefix}{i}"] = values
    return params


async def write_rows(
    conn: AsyncConnection,
    leads: Sequence[dict[str, Any]],
    identities: Sequence[dict[str, Any]],
    conversations: Sequence[dict[str, Any]],
    interactions: Sequence[dict[str, Any]],
    touched_customers: Sequence[tuple[int, datetime]],
    touched_conversations: Sequence[tuple[int, datetime]],
    cleared: Sequence[str],
) -> tuple[list[int], list[int], list[int]]:
    """A batch's rows and closing UPDATEs in one statement; the new ids of leads,
    conversations and interactions, in row order.

    `identities[n]` is the identity of `leads[n]` (its customer_id is not given). A
    customer_id of -n (n >= 1) names `leads[n - 1]`, a conversation_id of -n
    `conversations[n - 1]`. The UPDATEs touch rows that existed before the statement
    only (the new rows are inserted with their final values).
    """
    params = {
        **_arrays("l", customer_t, LEAD_KEYS, leads),
        **_arrays("i", identity_t, IDENTITY_KEYS, identities),
        **_arrays("v", conversation_t, CONVERSATION_KEYS, conversations),
        **_arrays("h", interaction_t, INTERACTION_KEYS, interactions),
        **_touch_params(touched_customers, touched_conversations, cleared),
    }
    row = (await conn.execute(_write_statement(conn.dialect), params)).one()
    return list(row.leads), list(row.conversations), list(row.interactions)


_READ = text(
    f"""
    SELECT
      ARRAY(
        SELECT ROW(v.id, v.customer_id, v.channel, v.assignee_id, v.team_id)
        FROM conversation v
        WHERE v.customer_id = ANY(:ids)
          AND v.status IN ('{ConversationStatus.OPEN.value}', '{ConversationStatus.PENDING.value}')
        ORDER BY v.last_activity_at, v.id
      ) AS open,
      ARRAY(
        SELECT ROW(i.channel, i.provider_id, i.occurred_at, i.id, v.id, v.customer_id,
                   v.assignee_id, v.team_id)
        FROM unnest(:ref_channels, :ref_ids) AS r(channel, provider_id)
        JOIN interaction i ON i.channel = r.channel AND i.provider_id = r.provider_id
        JOIN conversation v ON v.id = i.conversation_id
      ) AS refs,
      ARRAY(
        SELECT ROW(w.n, i.customer_id, i.occurred_at, i.id, v.id, v.assignee_id, v.team_id)
        FROM unnest(:sent_channels, :sent_since) WITH ORDINALITY AS w(channel, since, n)
        JOIN interaction i
          ON i.customer_id = ANY(:ids) AND i.channel = w.channel AND i.direction = 'out'
         AND i.occurred_at >= w.since AND i.occurred_at <= :until
        JOIN conversation v ON v.id = i.conversation_id
      ) AS sent
    """
).bindparams(
    bindparam("ids", type_=ARRAY(Integer())),
    bindparam("ref_channels", type_=ARRAY(Text())),
    bindparam("ref_ids", type_=ARRAY(Text())),
    bindparam("sent_channels", type_=ARRAY(Text())),
    bindparam("sent_since", type_=ARRAY(UTCDateTime())),
    bindparam("until", type_=UTCDateTime()),
)


async def read_batch(
    conn: AsyncConnection,
    customer_ids: Sequence[int],
    refs: Sequence[tuple[str, str]],
    sent: Sequence[tuple[str, datetime]],
    until: datetime | None,
) -> Any:
    """BatchContext's reads after the match in one statement (see BatchContext.prefetch):
    the open conversations of `customer_ids` (oldest activity first), the conversations
    behind the (channel, provider id) `refs`, and what we sent those customers on each
    `sent` channel between its time and `until` (each row with the 1-based position of
    its pair). One row of three arrays of rows."""
    return (
        await conn.execute(
            _READ,
            {
                "ids": list(customer_ids),
                "ref_channels": [c for c, _ in refs],
                "ref_ids": [p for _, p in refs],
                "sent_channels": [c for c, _ in sent],
                "sent_since": [s for _, s in sent],
                "until": until,
            },
        )
    ).one()
