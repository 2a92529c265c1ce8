"""A campaign whose sends fail beyond its failure_threshold pauses itself and says why;
below the minimum number of failures it does not (a few bad addresses are normal)."""

from __future__ import annotations

from typing import Any

import pytest

from hub.campaigns.runs import start_run, watch
from hub.runtime import Hub
from tests.campaigns.conftest import EMAIL_TEMPLATE, create, send_all
from tests.support.api import Api
from tests.support.smtp_server import SmtpServer

pytestmark = pytest.mark.db

REFUSED = "550 5.1.1 No such user"


async def _campaign_for(api: Api, good: int, bad: int, smtp_server: SmtpServer) -> int:
    for n in range(good + bad):
        mail = f"p{n}@example.org"
        if n >= good:
            smtp_server.handler.refuse[mail] = REFUSED
        body: dict[str, Any] = {
            "name": f"Person {n}",
            "team_id": api.team_ids["Support"],
            "tags": ["newsletter"],
            "emails": [mail],
            "custom": {"code": f"C{n}"},
        }
        await create(api, "/api/v1/customers", body, as_="admin")
    segment = await create(
        api, "/api/v1/segments", {"name": "newsletter", "filter": {"tags": {"any": ["newsletter"]}}}
    )
    template = await create(api, "/api/v1/templates", EMAIL_TEMPLATE)
    campaign = await create(
        api,
        "/api/v1/campaigns",
        {
            "name": "Frühling",
            "channel": "email",
            "segment_id": segment,
            "steps": [{"kind": "send", "template_id": template}],
            "failure_threshold": 0.5,
        },
    )
    status, scheduled = await api.call(
        "POST", f"/api/v1/campaigns/{campaign}/schedule", "marketing"
    )
    assert (status, scheduled["status"]) == (200, "scheduled"), scheduled
    return campaign


async def _campaign_state(api: Api, campaign: int) -> tuple[str, str | None]:
    status, body = await api.call("GET", f"/api/v1/campaigns/{campaign}", "marketing")
    assert status == 200, body
    return body["status"], body["paused_reason"]


async def test_failures_past_the_threshold_pause_the_campaign_with_the_reason(
    api: Api, hub: Hub, smtp_server: SmtpServer
) -> None:
    campaign = await _campaign_for(api, good=2, bad=10, smtp_server=smtp_server)
    assert await start_run(hub.db, hub.settings, campaign) == 1
    assert await send_all(hub) == 12
    assert len(smtp_server.received) == 2
    await watch(hub.db, hub.settings)
    assert await _campaign_state(api, campaign) == (
        "paused",
        "paused by itself: 10 of 12 sends failed (threshold 50%)",
    )
    status, stats = await api.call("GET", f"/api/v1/campaigns/{campaign}/stats", "marketing")
    assert status == 200, stats
    assert (stats["audience"], stats["sent"], stats["failed"]) == (12, 2, 10)
    assert sum(point["sent"] for point in stats["over_time"]) == 2
    # A user who has looked at it resumes; the reason is cleared.
    status, resumed = await api.call("POST", f"/api/v1/campaigns/{campaign}/resume", "marketing")
    assert (status, resumed["status"], resumed["paused_reason"]) == (200, "running", None)


async def test_a_few_failures_do_not_pause(api: Api, hub: Hub, smtp_server: SmtpServer) -> None:
    # 9 of 10 failed is far past 50%, but under the minimum of 10 failures.
    campaign = await _campaign_for(api, good=1, bad=9, smtp_server=smtp_server)
    assert await start_run(hub.db, hub.settings, campaign) == 1
    assert await send_all(hub) == 10
    await watch(hub.db, hub.settings)
    assert await _campaign_state(api, campaign) == ("done", None)
