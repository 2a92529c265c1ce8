"""`replied_to_campaign`: customers who wrote to us after a message of that campaign.

Reads the outbox's `campaign_id` (campaigns, migration 0016): on a branch
without it the test is skipped, and the filter matches nobody.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert
from sqlmodel import SQLModel

from hub.runtime import Hub
from hub.segments import count, parse_filter
from hub.store.tables import customer_t, interaction_t, outbox_t, segment_t

pytestmark = pytest.mark.skipif(
    "campaign_id" not in outbox_t.c,
    reason="the outbox has no campaign_id before issue 12's campaigns",
)
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


async def test_only_replies_after_the_campaigns_message_count(hub: Hub) -> None:
    campaign_t = SQLModel.metadata.tables["campaign"]
    async with hub.db.write() as s:
        conn = await s.connection()
        for cid in (1, 2, 3):
            await conn.execute(insert(customer_t).values(id=cid, name=f"c{cid}", custom={}))
        await conn.execute(
            insert(segment_t).values(id=1, name="all", filter={}, created_at=T0, updated_at=T0)
        )
        for camp in (1, 2):
            await conn.execute(
                insert(campaign_t).values(id=camp, name=f"k{camp}", channel="email", segment_id=1)
            )
        # Customers 1 and 2 got campaign 1, customer 3 campaign 2.
        for cid, camp in ((1, 1), (2, 1), (3, 2)):
            await conn.execute(
                insert(outbox_t).values(
                    customer_id=cid, channel="email", recipient=f"c{cid}@x", body="b",
                    campaign_id=camp, headers={}, created_at=T0, updated_at=T0, next_attempt_at=T0,
                )
            )  # fmt: skip
        # 1 answered after the mail, 2 wrote only before it, 3 answered campaign 2.
        for cid, at in (
            (1, T0 + timedelta(hours=2)),
            (2, T0 - timedelta(days=1)),
            (3, T0 + timedelta(hours=1)),
        ):
            await conn.execute(
                insert(interaction_t).values(
                    customer_id=cid, channel="email", direction="in", occurred_at=at, meta={},
                    created_at=at,
                )
            )  # fmt: skip
    async with hub.db.read() as s:
        conn = await s.connection()
        assert await count(conn, parse_filter({"replied_to_campaign": 1}), None) == 1
        assert await count(conn, parse_filter({"replied_to_campaign": 2}), None) == 1
        assert await count(conn, parse_filter({"replied_to_campaign": 3}), None) == 0
