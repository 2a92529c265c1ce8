"""The scheduler in a running hub: APScheduler fires a scheduled campaign, a job survives a
restart in its SQLAlchemy job store, task reminders reach their assignee, and on
PostgreSQL one node leads by advisory lock and another takes over when it stops."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from hub.campaigns.scheduler import JOB_PREFIX
from hub.config import Settings
from hub.events.kinds import EventKind
from hub.runtime import Hub
from hub.store.tables import task_t
from tests.campaigns.conftest import SMS_TEMPLATE, campaign_settings, create
from tests.support.api import Api
from tests.support.smtp_server import SmtpServer
from tests.support.twilio_fake import TwilioFake

pytestmark = pytest.mark.db


@pytest.fixture
def settings(db_url: str, smtp_server: SmtpServer, fake: TwilioFake) -> Settings:
    return campaign_settings(db_url, smtp_server, fake, scheduler=True, tick_seconds=0.05)


@pytest.fixture
async def hub(settings: Settings, db: Any) -> AsyncIterator[Hub]:
    running = Hub(settings, dispatch=True)
    await running.start()
    yield running
    await running.stop()


async def until(check: Callable[[], Any], what: str, seconds: float = 20.0) -> None:
    """Wait for `check()` to be truthy (awaiting it when it is a coroutine); fail naming it."""
    for _ in range(int(seconds / 0.05)):
        got = check()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def _campaign(api: Api, schedule: dict[str, Any]) -> int:
    status, _ = await api.call(
        "POST",
        "/api/v1/customers",
        "admin",
        json={"name": "Kim", "team_id": api.team_ids["Support"], "phones": ["+4917155500009"]},
    )
    assert status == 201
    segment = await create(api, "/api/v1/segments", {"name": "all", "filter": {}})
    template = await create(api, "/api/v1/templates", SMS_TEMPLATE)
    body = {
        "name": "scheduled",
        "channel": "sms",
        "segment_id": segment,
        "steps": [{"kind": "send", "template_id": template}],
        "schedule": schedule,
    }
    campaign = await create(api, "/api/v1/campaigns", body)
    status, made = await api.call("POST", f"/api/v1/campaigns/{campaign}/schedule", "marketing")
    assert status == 200, made
    return campaign


async def test_the_scheduler_fires_a_campaign_and_it_finishes(
    api: Api, hub: Hub, fake: TwilioFake
) -> None:
    campaign = await _campaign(api, {"kind": "now"})

    async def done() -> bool:
        status, body = await api.call("GET", f"/api/v1/campaigns/{campaign}/stats", "marketing")
        return bool(status == 200 and body["status"] == "done")

    await until(done, "the campaign to be done")
    assert [r.form["To"] for r in fake.requests] == ["+4917155500009"]
    status, stats = await api.call("GET", f"/api/v1/campaigns/{campaign}/stats", "marketing")
    assert status == 200
    assert (stats["runs"], stats["sent"], stats["audience"]) == (1, 1, 1)


async def test_a_future_job_survives_a_restart(api: Api, hub: Hub, settings: Settings) -> None:
    at = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    campaign = await _campaign(api, {"kind": "at", "at": at.isoformat()})
    assert hub.campaigns.scheduler is not None
    scheduler = hub.campaigns.scheduler
    await until(lambda: scheduler.get_job(f"{JOB_PREFIX}{campaign}"), "the job")
    await hub.campaigns.stop()  # the node goes away; the job stays in the job store
    again = Hub(settings, dispatch=True)
    await again.start()
    try:
        await until(lambda: again.campaigns.scheduler is not None, "the new leader")
        assert again.campaigns.scheduler is not None
        job = again.campaigns.scheduler.get_job(f"{JOB_PREFIX}{campaign}")
        assert job is not None and job.next_run_time == at
    finally:
        await again.stop()


async def test_a_due_task_reminds_its_assignee(api: Api, hub: Hub) -> None:
    customer = await create(
        api, "/api/v1/customers", {"name": "Tom", "team_id": api.team_ids["Support"]}, "admin"
    )
    async with hub.bus.subscribe() as events:
        status, task = await api.call(
            "POST",
            "/api/v1/tasks",
            "agent",
            json={
                "customer_id": customer,
                "title": "Angebot nachfassen",
                "due_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
                "assignee_id": api.user_ids["agent"],
            },
        )
        assert status == 201, task
        while True:
            event = await asyncio.wait_for(events.get(), 20)
            if event.kind == EventKind.TASK_DUE:
                break
    assert event.users == frozenset({api.user_ids["agent"]})
    assert event.data["title"] == "Angebot nachfassen"
    async with hub.db.read() as s:
        reminded = (await (await s.connection()).execute(select(task_t.c.reminded_at))).scalar_one()
    assert reminded is not None


async def test_a_task_is_reminded_once_and_a_done_one_never(api: Api, hub: Hub) -> None:
    customer = await create(
        api, "/api/v1/customers", {"name": "Ute", "team_id": api.team_ids["Support"]}, "admin"
    )
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    async with hub.bus.subscribe() as events:
        ids = []
        for title, due in (("offen", past), ("erledigt", future)):
            status, task = await api.call(
                "POST",
                "/api/v1/tasks",
                "agent",
                json={
                    "customer_id": customer,
                    "title": title,
                    "due_at": due,
                    "assignee_id": api.user_ids["agent"],
                },
            )
            assert status == 201, task
            ids.append(task["id"])
        # Done, then overdue: never reminded.
        status, task = await api.call(
            "PATCH", f"/api/v1/tasks/{ids[1]}", "agent", json={"done": True, "due_at": past}
        )
        assert status == 200, task
        while True:
            event = await asyncio.wait_for(events.get(), 20)
            if event.kind == EventKind.TASK_DUE:
                break
        await hub.campaigns._remind()  # the tick's step, twice more
        await hub.campaigns._remind()
        later = []
        while not events.empty():
            later.append(events.get_nowait().kind)
    assert event.data["task_id"] == ids[0]
    assert EventKind.TASK_DUE not in later
    async with hub.db.read() as s:
        rows = (
            await (await s.connection()).execute(
                select(task_t.c.id, task_t.c.reminded_at.is_not(None)).order_by(task_t.c.id)
            )
        ).all()
    assert [tuple(r) for r in rows] == [(ids[0], True), (ids[1], False)]


@asynccontextmanager
async def node(settings: Settings) -> AsyncIterator[Hub]:
    running = Hub(settings, dispatch=True)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


async def test_one_node_leads_and_another_takes_over(settings: Settings, db: Any) -> None:
    if db.sqlite:
        pytest.skip("one SQLite node leads alone; the advisory lock is PostgreSQL's")
    async with node(settings) as first:
        await until(lambda: first.campaigns.leader, "the first node to lead")
        async with node(settings) as second:
            await asyncio.sleep(0.3)  # give the second a few tries at the lock
            assert (first.campaigns.leader, second.campaigns.leader) == (True, False)
            await first.campaigns.stop()  # the leader goes: its connection and lock go too
            await until(lambda: second.campaigns.leader, "the second node to take over")
            assert second.campaigns.scheduler is not None


async def test_stopping_the_node_cancels_an_expansion_and_the_next_node_finishes_it(
    api: Api, hub: Hub, settings: Settings, fake: TwilioFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An expansion in progress must not outlive the node's database (it held up the
    process's exit); the run stays "expanding" and the next leader resumes it."""
    import hub.campaigns.runs as runs

    real_step = runs.run_step
    entered = asyncio.Event()

    async def stuck_step(*args: Any, **kw: Any) -> None:
        entered.set()
        await asyncio.Event().wait()  # mid-expansion, until cancelled

    monkeypatch.setattr(runs, "run_step", stuck_step)
    campaign = await _campaign(api, {"kind": "now"})
    await asyncio.wait_for(entered.wait(), 20)
    await asyncio.wait_for(hub.campaigns.stop(), 5)  # promptly, the run cancelled
    assert hub.campaigns._runs == set()

    monkeypatch.setattr(runs, "run_step", real_step)
    again = Hub(settings, dispatch=True)
    await again.start()
    try:

        async def done() -> bool:
            status, body = await api.call("GET", f"/api/v1/campaigns/{campaign}/stats", "marketing")
            return bool(status == 200 and body["status"] == "done")

        await until(done, "the resumed campaign to be done")
    finally:
        await again.stop()
    assert [r.form["To"] for r in fake.requests] == ["+4917155500009"]
