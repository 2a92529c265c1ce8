"""The campaign scheduler: APScheduler fires the runs; one node leads.

APScheduler 3's `AsyncIOScheduler` keeps its jobs in its SQLAlchemy job store,
so a run due
while every node was down fires when one comes back (misfires are run, late,
once). The job store is synchronous: on PostgreSQL it uses the same database
through psycopg (table `apscheduler_jobs`, made by migration 0016); on SQLite a
file beside the database (see `jobstore_url` for why).

With PostgreSQL, every `crmhub serve` node tries `pg_try_advisory_lock` on a
connection of its own; the holder runs the scheduler and the watch, the
others try again every few seconds, so when the leader dies (its connection
and lock go with it) another takes over. SQLite is one node: it leads.

Each tick (campaigns.tick_seconds) the leader: brings the jobs in line with
the campaigns (a campaign scheduled through the API on any node gets its job
here), resumes runs a crash interrupted, watches running campaigns
(runs.watch) and sends `task.due` reminders to the assignees of tasks whose
due time came.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from sqlalchemy import bindparam, select, text, update
from sqlalchemy.engine import make_url

from hub.campaigns.runs import start_run, watch
from hub.config import Settings
from hub.events.bus import Event
from hub.events.kinds import task_due
from hub.store.campaign_models import CampaignStatus
from hub.store.db import Database
from hub.store.models import utcnow
from hub.store.tables import campaign_run_t, campaign_t, task_t


class _Wakes(Protocol):
    def wake(self) -> None: ...


class _Publishes(Protocol):
    def publish(self, event: Event) -> None: ...


class Hub(Protocol):
    """What the scheduler uses of the running hub (hub.runtime.Hub), named here
    because hub.runtime imports this module (tests/test_layering.py: no cycles)."""

    @property
    def db(self) -> Database: ...
    @property
    def settings(self) -> Settings: ...
    @property
    def dispatcher(self) -> _Wakes: ...
    @property
    def bus(self) -> _Publishes: ...


log = logging.getLogger(__name__)
LOCK_KEY = 0x63726D68  # "crmh": the advisory lock of the campaign scheduler
RETRY_SECONDS = 5.0  # how often a follower tries the lock
JOB_PREFIX = "campaign-"
_ACTIVE: CampaignScheduler | None = None  # the jobs' way back to the running hub


def jobstore_url(url: str) -> str:
    """Where APScheduler's (synchronous) job store keeps the jobs.

    PostgreSQL: the same database, through psycopg. SQLite: a file beside the
    database (`crmhub.db-jobs`). Not the same file: the job store writes from
    the event loop's thread, and when an async transaction of ours holds the
    file's write lock it can only finish on that loop, so the two would wait
    for each other until SQLite's busy timeout ("database is locked", seen in
    the tests). A file of its own has a lock of its own.
    """
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite"):
        path = parsed.database or ""
        jobs = f"{path}-jobs" if path and path != ":memory:" else ""
        return parsed.set(drivername="sqlite", database=jobs).render_as_string(hide_password=False)
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def trigger_for(row: Any) -> BaseTrigger:
    """The campaign's schedule as an APScheduler trigger, in its time zone."""
    zone = ZoneInfo(row.timezone)
    if row.schedule_kind == "cron":
        return CronTrigger.from_crontab(row.cron, timezone=zone)
    at = row.schedule_at if row.schedule_kind == "at" else None
    return DateTrigger(run_date=at or datetime.now(UTC), timezone=zone)


def next_fire_times(row: Any, after: datetime, n: int) -> list[datetime]:
    """The next `n` times the campaign fires after `after` (UTC), as the scheduler will."""
    trigger = trigger_for(row)
    times: list[datetime] = []
    previous = None
    now = after
    while len(times) < n:
        fire = trigger.get_next_fire_time(previous, now)
        if fire is None:
            break
        times.append(fire.astimezone(UTC))
        previous, now = fire, fire
    return times


async def fire_campaign(campaign_id: int) -> None:
    """The job APScheduler runs (referenced by name, so it survives restarts)."""
    if _ACTIVE is None:
        log.warning("campaign %s is due but no scheduler runs here", campaign_id)
        return
    await _ACTIVE.run(campaign_id)


# Tasks whose reminder is due (the partial index of migration 0021 holds just these).
_DUE_TASKS = (
    select(task_t.c.id, task_t.c.customer_id, task_t.c.assignee_id)
    .add_columns(task_t.c.title, task_t.c.due_at)
    .where(task_t.c.due_at <= bindparam("now"))
    .where(task_t.c.done.is_(False))
    .where(task_t.c.reminded_at.is_(None))
    .limit(500)
)


class CampaignScheduler:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.leader = False
        self.scheduler: AsyncIOScheduler | None = None
        self._task: asyncio.Task[None] | None = None
        self._running: set[int] = set()
        # Expansions in progress (APScheduler's jobs and resumes): cancelled at stop,
        # before the database closes under them; each resumes from its last chunk.
        self._runs: set[asyncio.Task[Any]] = set()
        self._resuming: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()

    async def start(self) -> None:
        global _ACTIVE
        _ACTIVE = self
        self._task = asyncio.create_task(self._lead(), name="campaign-scheduler")

    def wake(self) -> None:
        """Look at the campaigns now (one was scheduled on this node)."""
        self._wake.set()

    async def stop(self) -> None:
        global _ACTIVE
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        # An expansion left running would outlive the database it writes to (and hold
        # up the process's exit); it goes on from its last committed chunk next time.
        runs = [*self._runs, *self._resuming]
        for run in runs:
            run.cancel()
        for run in runs:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await run
        self.leader = False
        if _ACTIVE is self:
            _ACTIVE = None

    async def _lead(self) -> None:
        db = self.hub.db
        lock_conn = None
        try:
            if not db.sqlite:
                while True:
                    lock_conn = await db.engine.connect()
                    got = (
                        await lock_conn.execute(
                            text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}
                        )
                    ).scalar()
                    if got:
                        break
                    await lock_conn.close()
                    lock_conn = None
                    await asyncio.sleep(RETRY_SECONDS)
            self.leader = True
            log.info("campaign scheduler: this node leads")
            self.scheduler = AsyncIOScheduler(
                jobstores={"default": SQLAlchemyJobStore(url=jobstore_url(db.url))},
                job_defaults={"coalesce": True, "misfire_grace_time": None, "max_instances": 1},
                timezone=UTC,
            )
            self.scheduler.start()
            tick = self.hub.settings.campaigns.tick_seconds
            while True:
                try:
                    await self.tick()
                except Exception:
                    log.exception("campaign scheduler tick failed; trying again")
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), tick)
        except Exception:
            # Not silently: without a leader no campaign fires. The lock goes with the
            # connection below, so another node takes over; this one does after a restart.
            log.exception("campaign scheduler stopped on this node")
            raise
        finally:
            self.leader = False
            if lock_conn is not None:
                # Not back into the pool: the lock belongs to the session, so a pooled
                # connection would keep it. Closing the connection itself frees it.
                with contextlib.suppress(Exception):
                    await lock_conn.invalidate()
                    await lock_conn.close()

    async def run(self, campaign_id: int) -> None:
        if campaign_id in self._running:
            return
        self._running.add(campaign_id)
        task = asyncio.current_task()
        if task is not None:
            self._runs.add(task)
        try:
            await start_run(self.hub.db, self.hub.settings, campaign_id)
            self.hub.dispatcher.wake()
        except Exception:
            log.exception("campaign %s: run failed; the next tick resumes it", campaign_id)
        finally:
            self._running.discard(campaign_id)
            if task is not None:
                self._runs.discard(task)

    async def tick(self) -> None:
        await self._sync_jobs()
        await self._resume()
        await watch(self.hub.db, self.hub.settings)
        await self._remind()

    async def _sync_jobs(self) -> None:
        assert self.scheduler is not None
        async with self.hub.db.read() as s:
            rows = (await (await s.connection()).execute(select(campaign_t))).all()
        jobs = {job.id for job in self.scheduler.get_jobs()}
        for row in rows:
            job_id = f"{JOB_PREFIX}{row.id}"
            wanted = row.status == CampaignStatus.SCHEDULED.value or (
                row.schedule_kind == "cron"
                and row.status in (CampaignStatus.RUNNING.value, CampaignStatus.PAUSED.value)
            )
            if wanted and job_id not in jobs:
                self.scheduler.add_job(
                    fire_campaign,
                    trigger_for(row),
                    args=[row.id],
                    id=job_id,
                    replace_existing=True,
                )
            elif not wanted and job_id in jobs:
                self.scheduler.remove_job(job_id)

    async def _resume(self) -> None:
        """Runs a crash left half-expanded go on from their last chunk."""
        async with self.hub.db.read() as s:
            ids = (
                await (await s.connection()).execute(
                    select(campaign_run_t.c.campaign_id)
                    .join(campaign_t, campaign_t.c.id == campaign_run_t.c.campaign_id)
                    .where(campaign_run_t.c.status == "expanding")
                    .where(campaign_t.c.status == CampaignStatus.RUNNING.value)
                )
            ).scalars()
            todo = [cid for cid in ids if cid not in self._running]
        for cid in todo:
            task = asyncio.create_task(self.run(cid), name=f"campaign-{cid}-resume")
            self._resuming.add(task)
            task.add_done_callback(self._resuming.discard)

    async def _remind(self) -> None:
        now = utcnow()
        # Looked for in a read transaction: a write transaction takes SQLite's write lock
        # at its start, and every tick would queue behind (and hold up) the ingest
        # writer even when nothing is due, which is nearly always.
        async with self.hub.db.read() as s:
            conn = await s.connection()
            candidates = (await conn.execute(_DUE_TASKS, {"now": now})).all()
        if not candidates:
            return
        async with self.hub.db.write() as s:
            conn = await s.connection()
            # Again under the lock: a task done or reminded since is not reminded (again).
            due = (
                await conn.execute(
                    _DUE_TASKS.where(task_t.c.id.in_([t.id for t in candidates])),
                    {"now": now},
                )
            ).all()
            if not due:
                return
            await conn.execute(
                update(task_t).where(task_t.c.id.in_([t.id for t in due])).values(reminded_at=now)
            )
        for t in due:
            if t.assignee_id is not None:
                self.hub.bus.publish(
                    task_due(
                        task_id=t.id,
                        customer_id=t.customer_id,
                        assignee_id=t.assignee_id,
                        title=t.title,
                        due_at=t.due_at.isoformat(),
                    )
                )
