"""An ingest batch's statements on PostgreSQL: fewer round trips, one text each.

Through Core, asyncpg runs a multi-row write as executemany (one execution per
row) and a multi-row INSERT .. RETURNING as a VALUES list whose SQL text differs
with every row count (a new prepared statement, planned again, in nearly every
batch); each statement is a round trip, and every trip lets the busy event loop
stretch the batch's transaction. Here, on PostgreSQL only:

- the rows travel as one array per column, which `unnest` turns back into rows:
  one text and one plan whatever the batch's size;
- a batch's leads, their identities, its new conversations and history entries
  and the closing UPDATEs (customers' last contact, conversations' activity,
  bounce marks cleared) are one statement of data-modifying CTEs (`write_rows`),
  not five to seven;
- what routing asks after the match (open conversations, thread references,
  what we sent) is one statement of arrays of rows (`read_batch`), not three.

SQLite keeps the portable statements (hub/ingest/batch.py, context.py), where a
statement costs no network round trip and writes ride along with the next one
(`defer_many`). tests/ingest/test_pg_writes.py checks that both store the same rows.
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

# The customers need no ordered lock here: the match already holds every one the batch
# touches FOR NO KEY UPDATE, taken in id order (hub/ingest/match.py), so this UPDATE,
# whatever order its plan visits them in, waits for nobody.
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
# An identity's customer_id is that of the lead at the same position (-n names leads[n-1]).
IDENTITY_KEYS = (
    "customer_id", "kind", "value", "raw", "primary", "verified", "soft_bounces", "created_at",
)  # fmt: skip
CONVERSATION_KEYS = (
    "customer_id", "channel", "subject", "status", "assignee_id", "team_id", "created_at",
    "last_activity_at",
)  # fmt: skip
INTERACTION_KEYS = (
    "customer_id", "conversation_id", "channel", "direction", "occurred_at", "subject",
    "text", "provider_id", "sender", "recipient", "delivery_status", "meta", "author_id",
    "created_at",
)  # fmt: skip
# Columns that may name a new row of the same statement, and its numbering by position
# (in `_write_statement`; the n-th smallest new id is the n-th row's).
_NEW = {"customer_id": "leads_n", "conversation_id": "conversations_n"}


def array_of(type_: Any) -> ARRAY[Any]:
    """An array parameter of `type_`'s values; strings without their length: a cast to
    varchar(n)[] cuts a longer value to fit (to match, or be stored as, another one),
    where the column itself refuses it and a comparison finds nothing."""
    if getattr(type_, "length", None) is not None:
        return ARRAY(Text())
    return ARRAY(type_)


def _insert_sql(
    dialect: Any, table: Table, keys: tuple[str, ...], prefix: str, *, numbered: bool = False
) -> tuple[str, list[BindParameter[Any]]]:
    """INSERT INTO `table` (`keys`) from one array per column (`:<prefix><n>`) in the
    arrays' order, RETURNING id. JSON values travel as their text and are cast back.

    ORDER BY the arrays' position: the ids a serial key gives then ascend in row order,
    so the n-th smallest new id is the n-th row's (SQLAlchemy matches its INSERT ..
    RETURNING rows to their parameters on PostgreSQL the same way: insertmanyvalues'
    implicit sentinel). `numbered`: within `_write_statement`, where a customer_id or
    conversation_id may name a row of the same statement (see `write_rows`).
    """
    # Core fills a missing column's Python-side default; this statement cannot (the
    # database would store NULL or refuse the row): every such column must be given.
    missing = [c.name for c in table.c if c.default is not None and c.name not in keys]
    if missing:
        raise ValueError(f"{table.name} rows lack {missing}, whose defaults Core would fill")
    quote = dialect.identifier_preparer.quote
    binds: list[BindParameter[Any]] = []
    arrays, aliases, values, joins = [], [], [], []
    for i, key in enumerate(keys):
        column = table.c[key]
        is_json = isinstance(column.type, JSON)
        binds.append(
            bindparam(f"{prefix}{i}", type_=ARRAY(Text()) if is_json else array_of(column.type))
        )
        arrays.append(f":{prefix}{i}")
        aliases.append(f"c{i}")
        value = f"CAST(u.c{i} AS json)" if is_json else f"u.c{i}"
        if numbered and key in _NEW:
            binds.append(bindparam(f"{prefix}{i}_new", type_=ARRAY(Integer())))
            arrays.append(f":{prefix}{i}_new")
            aliases.append(f"n{i}")
            joins.append(f"LEFT JOIN {_NEW[key]} j{i} ON j{i}.n = u.n{i} ")
            value = f"COALESCE(j{i}.id, u.c{i})"
        values.append(value)
    sql = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(k) for k in keys)}) "
        f"SELECT {', '.join(values)} "
        f"FROM unnest({', '.join(arrays)}) WITH ORDINALITY AS u({', '.join(aliases)}, ord) "
        f"{''.join(joins)}ORDER BY u.ord RETURNING id"
    )
    return sql, binds


def _arrays(
    prefix: str,
    table: Table,
    keys: tuple[str, ...],
    rows: Sequence[dict[str, Any]],
    *,
    numbered: bool = False,
) -> dict[str, Any]:
    """The parameters of `_insert_sql` for `rows`."""
    params: dict[str, Any] = {}
    for i, key in enumerate(keys):
        values = [r[key] for r in rows]
        if isinstance(table.c[key].type, JSON):
            # As the JSON column would encode them (json.dumps); an array of json would
            # take a list inside it for another dimension.
            values = [json.dumps(v) for v in values]
        elif numbered and key in _NEW:
            # -n names the n-th new row of the statement (see write_rows)
            params[f"{prefix}{i}_new"] = [-v if v is not None and v < 0 else None for v in values]
            values = [None if v is not None and v < 0 else v for v in values]
        params[f"{prefix}{i}"] = values
    return params


_INSERTS: dict[tuple[str, tuple[str, ...]], TextClause] = {}


async def insert_rows(conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """A multi-row INSERT as one statement (every row has the keys of the first)."""
    if not rows:
        return
    keys = tuple(rows[0])
    if (table.name, keys) not in _INSERTS:
        sql, binds = _insert_sql(conn.dialect, table, keys, "c")
        _INSERTS[(table.name, keys)] = text(sql).bindparams(*binds)
    await conn.execute(_INSERTS[(table.name, keys)], _arrays("c", table, keys, rows))


_WRITE: list[Any] = []


def _write_statement(dialect: Any) -> Any:
    """Leads, their identities, conversations and history entries, then the closing
    UPDATEs (see `touch`), in one statement; it answers the new ids of each table in
    row order (see `_insert_sql`)."""
    if not _WRITE:
        parts: list[str] = []
        binds: list[BindParameter[Any]] = []
        for name, table, keys, prefix in (
            ("leads", customer_t, LEAD_KEYS, "l"),
            ("identities", identity_t, IDENTITY_KEYS, "i"),
            ("conversations", conversation_t, CONVERSATION_KEYS, "v"),
            ("interactions", interaction_t, INTERACTION_KEYS, "h"),
        ):
            sql, more = _insert_sql(dialect, table, keys, prefix, numbered=True)
            parts.append(f"{name} AS ({sql})")
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

    A customer_id of -n (n >= 1) names `leads[n - 1]`, a conversation_id of -n
    `conversations[n - 1]` (an identity's customer_id is that of its lead). The
    UPDATEs touch rows that existed before the statement only (the new rows are
    inserted with their final values).
    """
    params = {
        **_arrays("l", customer_t, LEAD_KEYS, leads, numbered=True),
        **_arrays("i", identity_t, IDENTITY_KEYS, identities, numbered=True),
        **_arrays("v", conversation_t, CONVERSATION_KEYS, conversations, numbered=True),
        **_arrays("h", interaction_t, INTERACTION_KEYS, interactions, numbered=True),
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
        WHERE v.customer_id = ANY(:ids)  -- context.ACTIVE_STATUSES
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
