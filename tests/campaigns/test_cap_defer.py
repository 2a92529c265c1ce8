"""The weekly frequency cap with `over_cap: defer`: messages over the cap are queued,
not left out, and wait until a week has passed (then quiet hours still apply)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from hub.campaigns.runs import start_run
from hub.runtime import Hub
from hub.store.tables import outbox_t
from tests.campaigns.conftest import send_all
from tests.campaigns.test_sms_and_rules import PHONES, _sms_campaign
from tests.support.api import Api
from tests.support.twilio_fake import TwilioFake

pytestmark = pytest.mark.db


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


async def test_over_the_cap_waits_a_week_instead_of_being_skipped(
    api: Api, hub: Hub, fake: TwilioFake
) -> None:
    cfg = hub.settings.campaigns.model_copy(update={"max_per_week": 1, "over_cap": "defer"})
    settings = hub.settings.model_copy(update={"campaigns": cfg})
    first = await _sms_campaign(api, "first")
    await start_run(hub.db, settings, first)
    assert await send_all(hub) == 3
    second = await _sms_campaign(api, "second")
    before = datetime.now(UTC)
    await start_run(hub.db, settings, second)
    after = datetime.now(UTC)
    assert await send_all(hub) == 0  # nothing of the second campaign is due this week
    assert len(fake.requests) == len(PHONES)
    async with hub.db.read() as s:
        rows = (
            await (await s.connection()).execute(
                select(outbox_t.c.recipient, outbox_t.c.status, outbox_t.c.next_attempt_at)
                .where(outbox_t.c.campaign_id == second)
                .order_by(outbox_t.c.recipient)
            )
        ).all()
    assert [(r.recipient, r.status) for r in rows] == [(p, "queued") for p in PHONES]
    for r in rows:
        # A week on; the conftest's quiet hours (23:59 to 00:00) may add a minute.
        due = _aware(r.next_attempt_at)
        assert before + timedelta(days=7) <= due <= after + timedelta(days=7, minutes=1)
    status, stats = await api.call("GET", f"/api/v1/campaigns/{second}/stats", "marketing")
    assert status == 200
    assert (
        stats["audience"],
        stats["suppressed"],
        stats["deferred"],
        stats["queued"],
        stats["sent"],
    ) == (3, {}, {"frequency_cap": 3}, 3, 0)
