"""Call-back tasks ("Rückruf"): a missed inbound call opens one, speaking to the caller
closes it (an answered call, an answer that trailed the hangup, or an outbound call)."""

from __future__ import annotations

from datetime import timedelta
from enum import Enum

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncConnection

from channels.base import CallEvent, Direction
from hub.calls.group import Outcome
from hub.store.models import utcnow
from hub.store.tables import task_t
from routing.calls import CallState

CALLBACK_TITLE = "Rückruf"


class Step(Enum):
    OPEN = "open"  # a missed inbound call: a call-back task
    CLOSE = "close"  # spoken to (or called back): the open call-back is done


def callback_step(event: CallEvent, out: Outcome) -> Step | None:
    """What the call's step (`out.before` → `after`) does to the customer's call-back."""
    before, after = out.before, out.after
    assert after is not None
    became = before is None or before.state is not after.state
    if not became:
        if before is not None and before.answered_by is None and after.answered_by:
            # An answer that trailed the hangup: someone did speak to the caller.
            return Step.CLOSE
        return None
    if after.state is CallState.MISSED and event.direction is Direction.IN:
        return Step.OPEN
    if after.state is CallState.ANSWERED or (before is None and event.direction is Direction.OUT):
        return Step.CLOSE
    return None


async def update_callbacks(
    conn: AsyncConnection, event: CallEvent, out: Outcome, owner: int | None, due_minutes: float
) -> None:
    """Open or close the customer's call-back for the call's step (`out.before` → `after`)."""
    assert out.customer_id is not None
    step = callback_step(event, out)
    if step is Step.OPEN:
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
    elif step is Step.CLOSE:
        await close_callbacks(conn, out.customer_id)


async def close_callbacks(conn: AsyncConnection, customer_id: int) -> None:
    await conn.execute(
        update(task_t)
        .where(task_t.c.customer_id == customer_id)
        .where(task_t.c.title == CALLBACK_TITLE)
        .where(task_t.c.done.is_(False))
        .values(done=True)
    )
