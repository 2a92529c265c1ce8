"""Follow-up rules of a campaign's steps, fired by the scheduler's watch.

- `no_reply` (delay_days, template): customers whose first message was sent at
  least `delay_days` ago and who sent nothing in since get the template, queued
  like the first message (same consent, caps and quiet hours: expand_chunk).
- `replied` (task_title): a customer who wrote in after the first message gets a
  task for their owner (unassigned without one), once (campaign_task_mark).
- `bounced` (task_title): the first message bounced or failed: a task, once.

A reply is any inbound interaction of the customer after the campaign's
message to them, on any channel: an email answer threads into a conversation,
an SMS answer within the window lands in the customer's history; both count.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import and_, exists, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.campaigns.expand import Step, expand_chunk
from hub.config import Settings
from hub.outbox.queue import OutboxStatus
from hub.store.db import Database
from hub.store.models import utcnow
from hub.store.tables import (
    campaign_step_t,
    campaign_t,
    campaign_task_mark_t,
    customer_t,
    interaction_t,
    outbox_t,
    task_t,
)

BATCH = 1000
FAILED_DELIVERY = ("bounced", "failed", "undelivered")


def replied() -> Any:
    """The customer wrote in (any channel) after the message went out: after its last
    claim (the send), not its queueing, which may be a week earlier (quiet hours,
    frequency cap, rate limits)."""
    sent_at = func.coalesce(outbox_t.c.claimed_at, outbox_t.c.created_at)
    return exists().where(
        and_(
            interaction_t.c.customer_id == outbox_t.c.customer_id,
            interaction_t.c.direction == "in",
            interaction_t.c.occurred_at >= sent_at,
        )
    )


async def _tasks(conn: AsyncConnection, step: Any, customer_ids: list[int], title: str) -> None:
    if not customer_ids:
        return
    owners: dict[int, int | None] = {
        cid: owner
        for cid, owner in await conn.execute(
            select(customer_t.c.id, customer_t.c.owner_id).where(customer_t.c.id.in_(customer_ids))
        )
    }
    now = utcnow()
    await conn.execute(
        task_t.insert(),
        [
            {
                "customer_id": cid,
                "assignee_id": owners.get(cid),
                "title": title,
                "due_at": now + timedelta(days=1),
                "done": False,
                "created_at": now,
            }
            for cid in customer_ids
        ],
    )
    await conn.execute(
        campaign_task_mark_t.insert(),
        [{"step_id": step.id, "customer_id": cid} for cid in customer_ids],
    )


async def fire_followups(db: Database, settings: Settings, campaign_id: int, run_id: int) -> bool:
    """Fire what is due; True while a `no_reply` rule may still fire later."""
    async with db.read() as s:
        conn = await s.connection()
        campaign = (
            await conn.execute(select(campaign_t).where(campaign_t.c.id == campaign_id))
        ).one()
        steps = list(
            await conn.execute(
                select(campaign_step_t)
                .where(campaign_step_t.c.campaign_id == campaign_id)
                .order_by(campaign_step_t.c.position)
            )
        )
    first = next(s for s in steps if s.kind == "send")
    pending = False
    now = utcnow()
    for step in steps:
        if step.kind == "send":
            continue
        async with db.write() as s:
            conn = await s.connection()
            sent = (
                select(outbox_t.c.customer_id)
                .where(outbox_t.c.campaign_run_id == run_id)
                .where(outbox_t.c.campaign_step_id == first.id)
            )
            marked = exists().where(
                and_(
                    campaign_task_mark_t.c.step_id == step.id,
                    campaign_task_mark_t.c.customer_id == outbox_t.c.customer_id,
                )
            )
            if step.kind == "no_reply":
                cutoff = now - timedelta(days=step.delay_days)
                due = list(
                    (
                        await conn.execute(
                            sent.where(outbox_t.c.status == OutboxStatus.SENT.value)
                            .where(outbox_t.c.updated_at <= cutoff)
                            .where(~replied())
                            .where(~marked)
                            .order_by(outbox_t.c.customer_id)
                            .limit(BATCH)
                        )
                    ).scalars()
                )
                if due:
                    follow_step = Step(
                        step.id, campaign_id, campaign.channel, step.template_id,
                        campaign.mailbox, campaign.rate_per_second,
                    )  # fmt: skip
                    await expand_chunk(conn, settings, follow_step, run_id, due, now, 0)
                    # Handled, whether queued or left out (opted out since, capped…).
                    await conn.execute(
                        campaign_task_mark_t.insert(),
                        [{"step_id": step.id, "customer_id": cid} for cid in due],
                    )
                waiting = (
                    await conn.execute(
                        sent.where(
                            outbox_t.c.status.in_(("queued", "sending"))
                            | (
                                (outbox_t.c.status == OutboxStatus.SENT.value)
                                & (outbox_t.c.updated_at > cutoff)
                            )
                        ).limit(1)
                    )
                ).first()
                pending = pending or waiting is not None or len(due) == BATCH
            elif step.kind == "replied":
                ids = list(
                    (
                        await conn.execute(sent.where(replied()).where(~marked).limit(BATCH))
                    ).scalars()
                )
                await _tasks(conn, step, ids, step.task_title)
            elif step.kind == "bounced":
                ids = list(
                    (
                        await conn.execute(
                            sent.join(
                                interaction_t, interaction_t.c.id == outbox_t.c.interaction_id
                            )
                            .where(interaction_t.c.delivery_status.in_(FAILED_DELIVERY))
                            .where(~marked)
                            .limit(BATCH)
                        )
                    ).scalars()
                )
                await _tasks(conn, step, ids, step.task_title)
    return pending
