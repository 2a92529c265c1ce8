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

from sqlalchemy import JSON, Table, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.types import Integer, Text

from hub.store.columns import UTCDateTime
from hub.store.models import ConversationStatus, IdentityKind

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


_TOUCH = text(
    f"""
    WITH customers AS (
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
    ), conversations AS (
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
    SELECT 1
    """
).bindparams(
    bindparam("customer_ids", type_=ARRAY(Integer())),
    bindparam("customer_ats", type_=ARRAY(UTCDateTime())),
    bindparam("conversation_ids", type_=ARRAY(Integer())),
    bindparam("conversation_ats", type_=ARRAY(UTCDateTime())),
    bindparam("cleared", type_=ARRAY(Text())),
)


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
    await conn.execute(
        _TOUCH,
        {
            "customer_ids": [c for c, _ in customers],
            "customer_ats": [at for _, at in customers],
            "conversation_ids": [c for c, _ in conversations],
            "conversation_ats": [at for _, at in conversations],
            "cleared": list(cleared),
        },
    )
