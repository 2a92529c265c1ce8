"""Call-back tasks ("Rückruf"): a missed inbound call opens one, speaking to the caller
closes it (an answered call, an answer that trailed the hangup, or an outbound call)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncConnection

from channels.base import CallEvent, Direction
from hub.calls.group import Outcome
from hub.store.models import utcnow
from hub.store.tables import task_t
from routing.calls import CallState

CALLBACK_TITLE = "Rückruf"


async def update_callbacks(
    conn: AsyncConnection, event: CallEvent, out: Outcome, owner: int | None, due_minutes: float
) -> None:
    """Open or close the customer's call-back for the call's step (`out.before` → `after`)."""
    before, after = out.before, out.after
    assert after is not None and out.customer_id is not None
    became = before is None or before.state is not after.state
    if not became:
        if before is not None and before.answered_by is None and after.answered_by:
            # An answer that trailed the hangup: someone did speak to the caller.
            await close_callbacks(conn, out.customer_id)
        return
    if after.state is CallState.MISSED and event.direction is Direction.IN:
        due = utcnow() + timedelta(minutes=due_minutes)
        # No owner: unassigned, on the customer (whose team sees it).
        res = await conn.execute(
            insert(task_t).values(
                customer_id=out.customer_id,
                assignee_id=owner,
                title=CALLBACK_TITLE,
                due_at=due,
                done=False,
                created_at=utcnow(),
            )
        )
        out.task_id = res.inserted_primary_key[0] if res.inserted_primary_key else None
        out.task_assignee = owner
    elif after.state is CallState.ANSWERED or (before is None and event.direction is Direction.OUT):
        # Spoken to (or called back): the open call-back is done.
        await close_callbacks(conn, out.customer_id)


async def close_callbacks(conn: AsyncConnection, customer_id: int) -> None:
    await conn.execute(
        update(task_t)
        .where(task_t.c.customer_id == customer_id)
        .where(task_t.c.title == CALLBACK_TITLE)
        .where(task_t.c.done.is_(False))
        .values(done=True)
    )
