"""`crmhub campaign ...` against a real database: create, schedule, start with progress,
stats with an SVG chart, and one-line errors with exit code 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.runtime import Hub
from tests.campaigns.conftest import SMS_TEMPLATE, create
from tests.segments.test_cli import _cli
from tests.support.api import Api

pytestmark = pytest.mark.db


async def test_campaign_commands(api: Api, hub: Hub, tmp_path: Path) -> None:
    for n in range(3):
        body = {"name": f"K{n}", "team_id": api.team_ids["Support"], "phones": [f"+49171555000{n}"]}
        await create(api, "/api/v1/customers", body, "admin")
    await create(api, "/api/v1/segments", {"name": "alle", "filter": {}})
    await create(api, "/api/v1/templates", SMS_TEMPLATE)
    made = await _cli(
        hub, tmp_path, "campaign", "create", "--name", "Aktion", "--segment", "alle",
        "--template", "sms-spring", "--channel", "sms",
    )  # fmt: skip
    assert made == (
        0,
        "campaign 1 'Aktion': draft (sms); `crmhub campaign schedule 1` hands it to the "
        "scheduler\n",
        "",
    )
    code, out, err = await _cli(hub, tmp_path, "campaign", "start", "Aktion")
    assert (code, out, err) == (
        1,
        "",
        "crmhub: campaign 1 is a draft: `crmhub campaign schedule` first\n",
    )
    assert await _cli(hub, tmp_path, "campaign", "schedule", "Aktion") == (
        0,
        "campaign 1 'Aktion': scheduled\n",
        "",
    )
    code, out, err = await _cli(hub, tmp_path, "campaign", "start", "1")
    assert (code, out) == (0, "campaign 1: run 1 queued; the dispatcher sends it\n")
    assert "3/3" in err  # the progress bar, on stderr
    svg = tmp_path / "sent.svg"
    code, out, _ = await _cli(hub, tmp_path, "campaign", "stats", "Aktion", "--svg", str(svg))
    lines = out.splitlines()
    assert code == 0 and lines[0] == "campaign 1 'Aktion': running"
    assert "  audience              3" in lines and "  queued                3" in lines
    assert svg.read_text().startswith("<svg")
    code, out, err = await _cli(
        hub, tmp_path, "campaign", "create", "--name", "B", "--segment", "nope",
        "--template", "sms-spring", "--channel", "sms",
    )  # fmt: skip
    assert (code, out, err) == (1, "", "crmhub: no segment 'nope'\n")
    code, _, err = await _cli(
        hub, tmp_path, "campaign", "create", "--name", "C", "--segment", "alle",
        "--template", "sms-spring", "--channel", "sms", "--at", "2026-03-29T02:30",
    )  # fmt: skip
    assert code == 1
    assert err == (
        "crmhub: schedule: Value error, 2026-03-29T02:30:00 does not exist in Europe/Berlin "
        "(the clocks skip it)\n"
    )
    assert (await _cli(hub, tmp_path, "campaign", "pause", "Aktion"))[:2] == (
        0,
        "campaign 1 'Aktion': paused (paused by a user)\n",
    )
    code, _, err = await _cli(hub, tmp_path, "campaign", "resume", "nope")
    assert (code, err) == (1, "crmhub: no campaign 'nope'\n")
