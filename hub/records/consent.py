"""Consent per customer, channel and purpose: the newest row is in force; history is kept.

Visible in the customer JSON and the export (state, source, time), and
recordable through the API with its source, as the law asks: consent must be
shown, not merely assumed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.store.models import utcnow
from hub.store.tables import consent_t

_HISTORY = (
    select(
        consent_t.c.customer_id,
        consent_t.c.channel,
        consent_t.c.purpose,
        consent_t.c.state,
        consent_t.c.source,
        consent_t.c.recorded_at,
    )
    .where(consent_t.c.customer_id.in_(bindparam("ids", expanding=True)))
    .order_by(consent_t.c.recorded_at.desc(), consent_t.c.id.desc())
)


async def consent_in_force(
    conn: AsyncConnection, customer_ids: Sequence[int]
) -> dict[int, list[dict[str, Any]]]:
    """Per customer: the newest state of each (channel, purpose), sorted by channel."""
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if not customer_ids:
        return out
    seen: set[tuple[int, str, str]] = set()
    for row in await conn.execute(_HISTORY, {"ids": list(customer_ids)}):
        key = (row.customer_id, row.channel, row.purpose)
        if key in seen:
            continue
        seen.add(key)
        out[row.customer_id].append(
            {
                "channel": row.channel,
                "purpose": row.purpose,
                "state": row.state,
                "source": row.source,
                "recorded_at": row.recorded_at.isoformat(),
            }
        )
    for items in out.values():
        items.sort(key=lambda c: (c["channel"], c["purpose"]))
    return out


async def consent_history(conn: AsyncConnection, customer_id: int) -> list[dict[str, Any]]:
    return [
        {
            "channel": r.channel,
            "purpose": r.purpose,
            "state": r.state,
            "source": r.source,
            "recorded_at": r.recorded_at.isoformat(),
        }
        for r in await conn.execute(_HISTORY, {"ids": [customer_id]})
    ]


async def record_consent(
    conn: AsyncConnection, customer_id: int, channel: str, purpose: str, state: str, source: str
) -> None:
    await conn.execute(
        consent_t.insert().values(
            customer_id=customer_id,
            channel=channel,
            purpose=purpose,
            state=state,
            source=source,
            recorded_at=utcnow(),
        )
    )
