"""A campaign's runs: start (or resume) one, and watch the running ones.

`start_run` is what the scheduler fires at the campaign's time (and what
`crmhub campaign start` calls directly, with a progress bar): it opens a run
(or picks up the run a crash interrupted, from its resume point), expands the
first step, and leaves the sending to the dispatchers.

`watch` runs on the scheduler's node every campaigns.tick_seconds:
- a run whose sends failed beyond the campaign's failure_threshold (at least
  10 failures) pauses the campaign, with the reason;
- follow-up rules fire (followups.py);
- a run with nothing left to send is done: the campaign is `done`, or
  `scheduled` again when it recurs (cron).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import func, select, update

from hub.campaigns.expand import Progress, Step, run_step
from hub.campaigns.followups import fire_followups
from hub.config import Settings
from hub.outbox.queue import OutboxStatus
from hub.store.campaign_models import CampaignStatus
from hub.store.db import Database
from hub.store.models import utcnow
from hub.store.tables import campaign_run_t, campaign_step_t, campaign_t, outbox_t

log = logging.getLogger(__name__)
MIN_FAILURES = 10  # a handful of bad addresses must not pause a campaign
ACTIVE = (OutboxStatus.QUEUED.value, OutboxStatus.SENDING.value)


async def start_run(
    db: Database, settings: Settings, campaign_id: int, progress: Progress | None = None
) -> int | None:
    """Expand the campaign's first step in a run; None when the campaign may not run now
    (paused, cancelled, done)."""
    async with db.write() as s:
        conn = await s.connection()
        campaign = (
            await conn.execute(select(campaign_t).where(campaign_t.c.id == campaign_id))
        ).first()
        if campaign is None or campaign.status not in (
            CampaignStatus.SCHEDULED.value,
            CampaignStatus.RUNNING.value,
        ):
            return None
        run = (
            await conn.execute(
                select(campaign_run_t)
                .where(campaign_run_t.c.campaign_id == campaign_id)
                .where(campaign_run_t.c.status == "expanding")
                .order_by(campaign_run_t.c.id.desc())
                .limit(1)
            )
        ).first()
        if run is None and campaign.schedule_kind != "cron":
            # A one-off campaign runs once: a second firing (a re-delivered job,
            # a resume racing the job) finds its run and queues nobody again.
            earlier = (
                await conn.execute(
                    select(campaign_run_t.c.id).where(campaign_run_t.c.campaign_id == campaign_id)
                )
            ).first()
            if earlier is not None:
                return None
        if run is None:
            run_id = int(
                (
                    await conn.execute(
                        campaign_run_t.insert()
                        .values(
                            campaign_id=campaign_id,
                            status="expanding",
                            expanded_through=0,
                            audience=0,
                            queued=0,
                            suppressed={},
                            started_at=utcnow(),
                        )
                        .returning(campaign_run_t.c.id)
                    )
                ).scalar_one()
            )
        else:
            run_id = run.id  # a crash interrupted it: go on after its last chunk
        first = (
            await conn.execute(
                select(campaign_step_t)
                .where(campaign_step_t.c.campaign_id == campaign_id)
                .where(campaign_step_t.c.kind == "send")
            )
        ).one()
        await conn.execute(
            update(campaign_t)
            .where(campaign_t.c.id == campaign_id)
            .values(status=CampaignStatus.RUNNING.value, updated_at=utcnow())
        )
    step = Step(
        first.id, campaign_id, campaign.channel, first.template_id, campaign.mailbox,
        campaign.rate_per_second,
    )  # fmt: skip
    await run_step(db, settings, step, run_id, progress)
    async with db.write() as s:
        await (await s.connection()).execute(
            update(campaign_run_t).where(campaign_run_t.c.id == run_id).values(status="sending")
        )
    log.info("campaign %s: run %s expanded", campaign_id, run_id)
    return run_id


async def _count(conn: Any, run_id: int, status: str) -> int:
    """Rows of the run in one status: a range of the (campaign_run_id, status) index."""
    query = (
        select(func.count())
        .select_from(outbox_t)
        .where(outbox_t.c.campaign_run_id == run_id)
        .where(outbox_t.c.status == status)
    )
    return int((await conn.execute(query)).scalar_one())


async def _active(conn: Any, run_id: int) -> bool:
    """Whether any of the run's rows still waits or is being sent (the first one found)."""
    query = (
        select(outbox_t.c.id)
        .where(outbox_t.c.campaign_run_id == run_id)
        .where(outbox_t.c.status.in_(ACTIVE))
        .limit(1)
    )
    return (await conn.execute(query)).first() is not None


async def watch(db: Database, settings: Settings) -> None:
    """One look at every running campaign (see the module docstring)."""
    async with db.read() as s:
        conn = await s.connection()
        runs = (
            await conn.execute(
                select(campaign_run_t, campaign_t.c.failure_threshold, campaign_t.c.schedule_kind)
                .join(campaign_t, campaign_t.c.id == campaign_run_t.c.campaign_id)
                .where(campaign_t.c.status == CampaignStatus.RUNNING.value)
                .where(campaign_run_t.c.status == "sending")
            )
        ).all()
    # Every tick, so the counts must stay cheap at a million rows: read-only (no
    # write lock held while counting), index ranges, and the sent rows (the big
    # range) counted only once enough failures make the threshold worth checking.
    for run in runs:
        async with db.read() as s:
            conn = await s.connection()
            failed = await _count(conn, run.id, OutboxStatus.FAILED.value)
            tried = failed
            if failed >= MIN_FAILURES:
                tried += await _count(conn, run.id, OutboxStatus.SENT.value)
        if failed >= MIN_FAILURES and failed / max(tried, 1) > run.failure_threshold:
            reason = (
                f"paused by itself: {failed} of {tried} sends failed "
                f"(threshold {run.failure_threshold:.0%})"
            )
            async with db.write() as s:
                await (await s.connection()).execute(
                    update(campaign_t)
                    .where(campaign_t.c.id == run.campaign_id)
                    .where(campaign_t.c.status == CampaignStatus.RUNNING.value)
                    .values(status=CampaignStatus.PAUSED.value, paused_reason=reason)
                )
            log.warning("campaign %s: %s", run.campaign_id, reason)
            continue
        pending = await fire_followups(db, settings, run.campaign_id, run.id)
        if pending:
            continue
        async with db.read() as s:
            if await _active(await s.connection(), run.id):
                continue
        async with db.write() as s:  # done, unless a row came back meanwhile (a retry)
            conn = await s.connection()
            if await _active(conn, run.id):
                continue
            await conn.execute(
                update(campaign_run_t)
                .where(campaign_run_t.c.id == run.id)
                .values(status="done", finished_at=utcnow())
            )
            after = CampaignStatus.SCHEDULED if run.schedule_kind == "cron" else CampaignStatus.DONE
            await conn.execute(
                update(campaign_t)
                .where(campaign_t.c.id == run.campaign_id)
                .where(campaign_t.c.status == CampaignStatus.RUNNING.value)
                .values(status=after.value, updated_at=utcnow())
            )
