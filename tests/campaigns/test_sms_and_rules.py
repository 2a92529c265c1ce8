"""SMS campaigns against the Twilio fake: quiet hours in the recipient's local time, the
weekly frequency cap, follow-up rules (no reply → a second message, replied → a task,
bounced → a task), and schedules across a DST change in Europe/Berlin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from sqlalchemy import select, update

from channels.base import Channel, InboundContact
from hub.campaigns.runs import start_run, watch
from hub.campaigns.scheduler import next_fire_times
from hub.campaigns.schemas import ScheduleIn
from hub.campaigns.timing import next_allowed, zone_for
from hub.config import QuietHours
from hub.runtime import Hub
from hub.store.tables import interaction_t, outbox_t, task_t
from tests.campaigns.conftest import EMAIL_TEMPLATE, SMS_TEMPLATE, create, send_all
from tests.support.api import Api
from tests.support.smtp_server import SmtpServer
from tests.support.twilio_fake import TwilioFake

pytestmark = pytest.mark.db

PHONES = ["+4917155500001", "+4917155500002", "+4917155500003"]


async def _sms_campaign(api: Api, name: str = "sms", steps: list[Any] | None = None) -> int:
    for n, phone in enumerate(PHONES):
        body = {"name": f"Kunde {n}", "team_id": api.team_ids["Support"], "phones": [phone]}
        status, _ = await api.call("POST", "/api/v1/customers", "admin", json=body)
        assert status in (201, 409)
    segment = await create(api, "/api/v1/segments", {"name": f"seg-{name}", "filter": {}})
    template = await create(api, "/api/v1/templates", {**SMS_TEMPLATE, "name": f"t-{name}"})
    body = {
        "name": name,
        "channel": "sms",
        "segment_id": segment,
        "steps": steps or [{"kind": "send", "template_id": template}],
    }
    campaign = await create(api, "/api/v1/campaigns", body)
    assert (await api.call("POST", f"/api/v1/campaigns/{campaign}/schedule", "marketing"))[0] == 200
    return campaign


def _sent_to(fake: TwilioFake) -> list[str]:
    return sorted(r.form["To"] for r in fake.requests if r.path.endswith("/Messages.json"))


async def test_an_sms_campaign_goes_through_twilio(api: Api, hub: Hub, fake: TwilioFake) -> None:
    campaign = await _sms_campaign(api)
    await start_run(hub.db, hub.settings, campaign)
    assert await send_all(hub) == 3
    assert _sent_to(fake) == PHONES
    bodies = {r.form["Body"] for r in fake.requests}
    assert bodies == {f"Hallo Kunde {n}, 10% bis Sonntag. STOP zum Abmelden" for n in range(3)}


async def test_quiet_hours_hold_messages_until_the_window_opens(
    api: Api, hub: Hub, fake: TwilioFake
) -> None:
    berlin = ZoneInfo("Europe/Berlin")
    now = datetime.now(berlin)
    # A one-minute window an hour from now: now is quiet for these German numbers.
    opens = (now + timedelta(hours=1)).replace(second=0, microsecond=0)
    window = {
        "start": opens.strftime("%H:%M"),
        "end": (opens + timedelta(minutes=1)).strftime("%H:%M"),
    }
    cfg = hub.settings.campaigns.model_copy(update={"quiet_hours": {"sms": QuietHours(**window)}})
    settings = hub.settings.model_copy(update={"campaigns": cfg})
    campaign = await _sms_campaign(api)
    await start_run(hub.db, settings, campaign)
    assert await send_all(hub) == 0
    assert fake.requests == []
    async with hub.db.read() as s:
        due = (await (await s.connection()).execute(select(outbox_t.c.next_attempt_at))).scalars()
        assert {d.astimezone(berlin).replace(second=0, microsecond=0) for d in due} == {opens}


def test_the_recipients_zone_and_the_next_window() -> None:
    quiet = QuietHours(start="08:00", end="20:00")
    berlin, ny = zone_for("+4930123456", None, "UTC"), zone_for("+12125550100", None, "UTC")
    assert (str(berlin), str(ny)) == ("Europe/Berlin", "America/New_York")
    assert str(zone_for(None, "AT", "UTC")) == "Europe/Vienna"
    assert str(zone_for(None, None, "Europe/Berlin")) == "Europe/Berlin"
    late = datetime(2026, 12, 5, 21, 30, tzinfo=UTC)  # 22:30 in Berlin, 16:30 in New York
    assert next_allowed(late, berlin, quiet) == datetime(2026, 12, 6, 7, 0, tzinfo=UTC)
    assert next_allowed(late, ny, quiet) == late
    early = datetime(2026, 12, 6, 5, 0, tzinfo=UTC)  # 06:00 in Berlin: same day, 08:00
    assert next_allowed(early, berlin, quiet) == datetime(2026, 12, 6, 7, 0, tzinfo=UTC)


async def test_the_weekly_cap_skips_and_counts(api: Api, hub: Hub, fake: TwilioFake) -> None:
    cfg = hub.settings.campaigns.model_copy(update={"max_per_week": 1})
    settings = hub.settings.model_copy(update={"campaigns": cfg})
    first = await _sms_campaign(api, "first")
    await start_run(hub.db, settings, first)
    second = await _sms_campaign(api, "second")
    await start_run(hub.db, settings, second)
    assert await send_all(hub) == 3
    status, stats = await api.call("GET", f"/api/v1/campaigns/{second}/stats", "marketing")
    assert status == 200
    assert (stats["audience"], stats["suppressed"], stats["sent"]) == (3, {"frequency_cap": 3}, 0)


async def test_follow_up_rules(api: Api, hub: Hub, fake: TwilioFake) -> None:
    nudge = await create(
        api, "/api/v1/templates", {**SMS_TEMPLATE, "name": "nudge", "body": "Noch da?"}
    )
    first = await create(api, "/api/v1/templates", {**SMS_TEMPLATE, "name": "first"})
    steps = [
        {"kind": "send", "template_id": first},
        {"kind": "no_reply", "template_id": nudge, "delay_days": 0},
        {"kind": "replied", "task_title": "Antwort auf Kampagne"},
        {"kind": "bounced", "task_title": "Nummer prüfen"},
    ]
    campaign = await _sms_campaign(api, "rules", steps)
    await start_run(hub.db, hub.settings, campaign)
    assert await send_all(hub) == 3
    # Kunde 0 answers; Kunde 2's message was undelivered.
    await hub.ingestor.ingest(
        InboundContact(Channel.SMS, PHONES[0], text="Ja bitte", provider_id="SMreply1")
    )
    async with hub.db.write() as s:
        conn = await s.connection()
        iid = (
            await conn.execute(
                select(outbox_t.c.interaction_id).where(outbox_t.c.recipient == PHONES[2])
            )
        ).scalar_one()
        await conn.execute(
            update(interaction_t)
            .where(interaction_t.c.id == iid)
            .values(delivery_status="undelivered")
        )
    for _ in range(2):  # a rule fires once, however often the watch looks
        await watch(hub.db, hub.settings)
        await send_all(hub)
    nudged = sorted(r.form["To"] for r in fake.requests if r.form["Body"] == "Noch da?")
    assert nudged == [PHONES[1], PHONES[2]]
    async with hub.db.read() as s:
        tasks = (
            await (await s.connection()).execute(
                select(task_t.c.customer_id, task_t.c.title).order_by(task_t.c.title)
            )
        ).all()
    assert [t.title for t in tasks] == ["Antwort auf Kampagne", "Nummer prüfen"]
    status, stats = await api.call("GET", f"/api/v1/campaigns/{campaign}/stats", "marketing")
    assert status == 200
    assert (stats["replied"], stats["sent"]) == (1, 5)
    # Per step: the first message to all three (Kunde 2's undelivered counts as bounced,
    # Kunde 0's reply as replied), the nudge to the two who did not answer; the task
    # rules send nothing.
    keys = ("kind", "sent", "failed", "bounced", "delivered", "replied", "uncertain")
    assert [tuple(step[k] for k in keys) for step in stats["steps"]] == [
        ("send", 3, 0, 1, 0, 1, 0),
        ("no_reply", 2, 0, 0, 0, 0, 0),
        ("replied", 0, 0, 0, 0, 0, 0),
        ("bounced", 0, 0, 0, 0, 0, 0),
    ]
    assert (stats["audience"], stats["suppressed"], stats["bounced"]) == (3, {}, 1)


async def test_a_message_sent_after_the_customer_wrote_is_not_answered_by_it(
    api: Api, hub: Hub, fake: TwilioFake
) -> None:
    """Replied counts what came in after the send, not after the queueing (a message
    may wait a week for quiet hours or the frequency cap)."""
    campaign = await _sms_campaign(api, "order")
    await start_run(hub.db, hub.settings, campaign)  # queued, not sent yet
    await hub.ingestor.ingest(
        InboundContact(Channel.SMS, PHONES[0], text="Hallo?", provider_id="SMbefore")
    )
    assert await send_all(hub) == 3

    async def replied() -> int:
        status, stats = await api.call("GET", f"/api/v1/campaigns/{campaign}/stats", "marketing")
        assert status == 200
        return int(stats["replied"])

    assert await replied() == 0
    await hub.ingestor.ingest(
        InboundContact(Channel.SMS, PHONES[0], text="Ja bitte", provider_id="SMafter")
    )
    assert await replied() == 1


def test_schedules_across_the_dst_change_in_berlin() -> None:
    daily = SimpleNamespace(schedule_kind="cron", cron="0 9 * * *", timezone="Europe/Berlin")
    fires = next_fire_times(daily, datetime(2026, 3, 27, 12, 0, tzinfo=UTC), 4)
    # 09:00 in Berlin is 08:00 UTC before the clocks go forward (29 March), 07:00 after.
    assert fires == [
        datetime(2026, 3, 28, 8, 0, tzinfo=UTC),
        datetime(2026, 3, 29, 7, 0, tzinfo=UTC),
        datetime(2026, 3, 30, 7, 0, tzinfo=UTC),
        datetime(2026, 3, 31, 7, 0, tzinfo=UTC),
    ]
    autumn = next_fire_times(daily, datetime(2026, 10, 24, 12, 0, tzinfo=UTC), 2)
    assert autumn == [
        datetime(2026, 10, 25, 8, 0, tzinfo=UTC),
        datetime(2026, 10, 26, 8, 0, tzinfo=UTC),
    ]
    # A wall-clock time the clocks skip is refused; one that happens twice is the first.
    with pytest.raises(ValidationError, match="does not exist in Europe/Berlin"):
        ScheduleIn(kind="at", at=datetime(2026, 3, 29, 2, 30))
    twice = ScheduleIn(kind="at", at=datetime(2026, 10, 25, 2, 30))
    assert twice.at == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    with pytest.raises(ValidationError, match="cron"):
        ScheduleIn(kind="cron", cron="0 25 * * *")


async def test_email_and_sms_templates_must_match_the_channel(api: Api, hub: Hub) -> None:
    segment = await create(api, "/api/v1/segments", {"name": "s", "filter": {}})
    email = await create(api, "/api/v1/templates", EMAIL_TEMPLATE)
    status, body = await api.call(
        "POST",
        "/api/v1/campaigns",
        "marketing",
        json={
            "name": "mixed",
            "channel": "sms",
            "segment_id": segment,
            "steps": [{"kind": "send", "template_id": email}],
        },
    )
    assert status == 422 and "is for email" in str(body)


async def test_email_campaigns_need_unsubscribe_settings(
    api: Api, hub: Hub, smtp_server: SmtpServer
) -> None:
    from hub.campaigns.store import check_sendable
    from hub.errors import Invalid

    bare = hub.settings.model_copy(
        update={"subscriptions": hub.settings.subscriptions.model_copy(update={"token_key": ""})}
    )
    with pytest.raises(Invalid, match=r"subscriptions\.token_key"):
        check_sendable(bare, "email")
    check_sendable(bare, "sms")  # SMS carries STOP instead
