"""What an ingest batch reads first: which contacts are stored already (a provider's
retry) and which customers the senders are (their identities, locked on PostgreSQL
until the batch commits).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, and_, bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.ingest.context import (
    IN_CHUNK,
    REPLY_KEY,
    IngestResult,
    grouped,
    one_of,
)
from hub.store.db import is_postgres
from hub.store.tables import customer_t, identity_t, interaction_t
from routing.base import CustomerRef

# All channels of a batch in one statement (one round trip, not one per channel); the
# (channel, provider id) index answers `channel IN (..) AND provider_id IN (..)`, and
# pairs of one channel's id with another channel are dropped after.
_EXISTING = {
    pg: select(
        interaction_t.c.id,
        interaction_t.c.customer_id,
        interaction_t.c.conversation_id,
        interaction_t.c.channel,
        interaction_t.c.provider_id,
        interaction_t.c.meta,
        customer_t.c.team_id,
    )
    .join(customer_t, customer_t.c.id == interaction_t.c.customer_id)
    .where(one_of(interaction_t.c.channel, "channels", pg))
    .where(one_of(interaction_t.c.provider_id, "pids", pg))
    for pg in (False, True)
}
_MATCH: dict[tuple[int, bool], Select[Any]] = {}


def _match_statement(kinds: int, pg: bool) -> Select[Any]:
    """Identities of `kinds` kinds (each `kind{i}` with its `values{i}`) with their customers,
    and whether each carries a bounce mark (see Matched)."""
    if (kinds, pg) not in _MATCH:
        _MATCH[(kinds, pg)] = (
            select(
                identity_t.c.kind,
                identity_t.c.value,
                customer_t.c.id,
                customer_t.c.team_id,
                customer_t.c.owner_id,
                customer_t.c.merged_into_id,
                or_(
                    identity_t.c.undeliverable_at.is_not(None), identity_t.c.soft_bounces != 0
                ).label("marked"),
            )
            .join(customer_t, customer_t.c.id == identity_t.c.customer_id)
            .where(
                or_(
                    *[
                        and_(
                            identity_t.c.kind == bindparam(f"kind{i}"),
                            one_of(identity_t.c.value, f"values{i}", pg),
                        )
                        for i in range(kinds)
                    ]
                )
            )
            # PostgreSQL: hold the matched customers until this batch commits, so a
            # merge (which locks both records FOR UPDATE, in id order too) waits and
            # then moves what the batch stored. SQLite runs one writer at a time.
            # FOR NO KEY UPDATE, not FOR SHARE: the batch updates these customers'
            # last contact later, and two nodes' batches that each held a share lock
            # on a common customer deadlocked upgrading it (bench/webhook_nodes.py).
            .order_by(customer_t.c.id)
            .with_for_update(key_share=True, of=customer_t)
        )
    return _MATCH[(kinds, pg)]


async def find_existing(
    conn: AsyncConnection, keys: set[tuple[str, str]]
) -> dict[tuple[str, str], IngestResult]:
    """Interactions already stored for these (channel, provider id) keys."""
    found: dict[tuple[str, str], IngestResult] = {}
    by_channel = grouped(keys)
    pids = sorted({pid for _, pid in keys})
    for i in range(0, len(pids), IN_CHUNK):
        rows = await conn.execute(
            _EXISTING[is_postgres(conn)],
            {"channels": sorted(by_channel), "pids": pids[i : i + IN_CHUNK]},
        )
        for row in rows:
            key = (row.channel, row.provider_id)
            if key in keys:
                found[key] = IngestResult(
                    row.id,
                    row.customer_id,
                    row.conversation_id,
                    duplicate=True,
                    team_id=row.team_id,
                    reply=(row.meta or {}).get(REPLY_KEY),
                )
    return found


class Matched(dict[tuple[str, str], CustomerRef]):
    """match_customers' answer: (kind, value) -> customer; `marked`: the identities found
    that carry a bounce mark (undeliverable or soft bounces counted), read with them."""

    marked: set[tuple[str, str]]


async def match_customers(conn: AsyncConnection, identities: set[tuple[str, str]]) -> Matched:
    by_kind = grouped(identities)
    found = Matched()
    found.marked = set()
    merged: dict[tuple[str, str], int] = {}
    params: dict[str, Any] = {}
    for i, (kind, values) in enumerate(by_kind.items()):
        params[f"kind{i}"], params[f"values{i}"] = kind, values
    rows = await conn.execute(_match_statement(len(by_kind), is_postgres(conn)), params)
    for kind, value, cid, team_id, owner_id, merged_into_id, marked in rows:
        if marked:
            found.marked.add((kind, value))
        if merged_into_id is not None:
            # Merged while we waited for the lock: the survivor has the identity now.
            merged[(kind, value)] = merged_into_id
        else:
            found[(kind, value)] = CustomerRef(cid, team_id, owner_id, False)
    if merged:
        survivors = await conn.execute(
            select(customer_t.c.id, customer_t.c.team_id, customer_t.c.owner_id)
            .where(customer_t.c.id.in_(sorted(set(merged.values()))))
            .order_by(customer_t.c.id)
            .with_for_update(key_share=True)
        )
        by_id = {r.id: r for r in survivors}
        for key, target in merged.items():
            if (r := by_id.get(target)) is not None:
                found[key] = CustomerRef(r.id, r.team_id, r.owner_id, False)
    return found
