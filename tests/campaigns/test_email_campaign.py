"""An email campaign end to end: segment → template → campaign → expansion → the real
SMTP sink; who is left out and why, one-click unsubscribe, pause and resume, cancel,
idempotent expansion after a crash mid-way, and the statistics."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select, update

from hub.campaigns.runs import start_run, watch
from hub.runtime import Hub
from hub.store.tables import campaign_run_t, identity_t, outbox_t
from tests.campaigns.conftest import EMAIL_TEMPLATE, PUBLIC_URL, create, send_all
from tests.support.api import Api
from tests.support.smtp_server import SmtpServer

pytestmark = pytest.mark.db

# name, email, code (None: the template fails for them), what happens to them
PEOPLE: list[tuple[str, str | None, str | None]] = [
    ("Anna Alt", "anna@example.org", "A1"),  # gets it
    ("Bernd Bach", "bernd@example.org", "B2"),  # opted out of email
    ("Clara Chor", "clara@example.org", "C3"),  # address hard-bounced
    ("Dora Dorn", None, "D4"),  # no email address at all
    ("Emil Eck", "emil@example.org", None),  # the template fails for him
    ("Frida Fink", "frida@example.org", "F6"),  # gets it
]


async def _audience(api: Api, hub: Hub) -> list[int]:
    ids = []
    for name, mail, code in PEOPLE:
        body: dict[str, Any] = {
            "name": name,
            "team_id": api.team_ids["Support"],
            "tags": ["newsletter"],
            "emails": [mail] if mail else [],
            "phones": [] if mail else ["+4917155500777"],
            "custom": {"code": code} if code else {},
        }
        ids.append(await create(api, "/api/v1/customers", body, as_="admin"))
    status, _ = await api.call(
        "POST",
        f"/api/v1/customers/{ids[1]}/consent",
        json={"channel": "email", "state": "opted_out", "source": "phone call"},
    )
    assert status in (200, 201)
    async with hub.db.write() as s:
        await (await s.connection()).execute(
            update(identity_t)
            .where(identity_t.c.value == "clara@example.org")
            .values(undeliverable_at=datetime.now(UTC))
        )
    # Not tagged: never selected.
    await create(
        api,
        "/api/v1/customers",
        {"name": "Xaver", "team_id": api.team_ids["Support"], "emails": ["x@example.org"]},
        as_="admin",
    )
    return ids


async def _campaign(api: Api, **extra: Any) -> int:
    segment = await create(
        api, "/api/v1/segments", {"name": "newsletter", "filter": {"tags": {"any": ["newsletter"]}}}
    )
    template = await create(api, "/api/v1/templates", EMAIL_TEMPLATE)
    body = {
        "name": "Frühling",
        "channel": "email",
        "segment_id": segment,
        "steps": [{"kind": "send", "template_id": template}],
        **extra,
    }
    campaign = await create(api, "/api/v1/campaigns", body)
    status, scheduled = await api.call(
        "POST", f"/api/v1/campaigns/{campaign}/schedule", "marketing"
    )
    assert (status, scheduled["status"]) == (200, "scheduled"), scheduled
    return campaign


async def _stats(api: Api, campaign: int) -> dict[str, Any]:
    status, body = await api.call("GET", f"/api/v1/campaigns/{campaign}/stats", "marketing")
    assert status == 200, body
    return dict(body)


async def test_a_campaign_reaches_exactly_who_may_get_it(
    api: Api, hub: Hub, smtp_server: SmtpServer
) -> None:
    ids = await _audience(api, hub)
    campaign = await _campaign(api)
    status, preview = await api.call(
        "POST", f"/api/v1/campaigns/{campaign}/preview", "marketing", json={"customer_id": ids[0]}
    )
    assert (status, preview["audience"], preview["subject"]) == (
        200,
        6,
        "Frühling bei uns, Anna Alt",
    ), preview
    assert await start_run(hub.db, hub.settings, campaign) == 1
    assert await send_all(hub) == 2
    received = sorted(smtp_server.received, key=lambda m: m.rcpt_tos)
    assert [m.rcpt_tos for m in received] == [["anna@example.org"], ["frida@example.org"]]
    msg = received[0].message
    assert msg["Subject"] == "Frühling bei uns, Anna Alt"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    https, mailto = re.findall(r"<([^>]+)>", msg["List-Unsubscribe"])
    assert https.startswith(f"{PUBLIC_URL}/u/") and mailto.startswith("mailto:unsubscribe@")
    assert msg.get_body(("plain",)).get_content().startswith("Ihr Code: A1\nAbmelden: " + https)
    assert "Ihr Code: A1" in msg.get_body(("html",)).get_content()
    # A second firing of the one-off campaign queues nobody again.
    assert await start_run(hub.db, hub.settings, campaign) is None
    await watch(hub.db, hub.settings)
    stats = await _stats(api, campaign)
    assert stats["status"] == "done"
    assert {k: stats[k] for k in ("audience", "sent", "failed", "blocked", "uncertain")} == {
        "audience": 6,
        "sent": 2,
        "failed": 0,
        "blocked": 0,
        "uncertain": 0,
    }
    assert stats["suppressed"] == {
        "bounced": 1,
        "no_address": 1,
        "opted_out": 1,
        "template_error": 1,
    }
    # Anna clicks one-click unsubscribe in her mail client (RFC 8058): no login, no cookie.
    resp = await api.client.post(https.removeprefix(PUBLIC_URL), data="List-Unsubscribe=One-Click")
    assert resp.status == 200
    assert (await _stats(api, campaign))["unsubscribed"] == 1


async def test_pause_holds_the_messages_and_resume_sends_them(
    api: Api, hub: Hub, smtp_server: SmtpServer
) -> None:
    await _audience(api, hub)
    campaign = await _campaign(api)
    await start_run(hub.db, hub.settings, campaign)
    status, paused = await api.call("POST", f"/api/v1/campaigns/{campaign}/pause", "marketing")
    assert (status, paused["status"], paused["paused_reason"]) == (
        200,
        "paused",
        "paused by a user",
    )
    assert await send_all(hub) == 0
    assert smtp_server.received == []
    assert (await api.call("POST", f"/api/v1/campaigns/{campaign}/pause", "marketing"))[0] == 409
    status, resumed = await api.call("POST", f"/api/v1/campaigns/{campaign}/resume", "marketing")
    assert (status, resumed["status"]) == (200, "running")
    assert await send_all(hub) == 2
    assert len(smtp_server.received) == 2


async def test_cancel_blocks_what_was_queued(api: Api, hub: Hub, smtp_server: SmtpServer) -> None:
    await _audience(api, hub)
    campaign = await _campaign(api)
    await start_run(hub.db, hub.settings, campaign)
    status, cancelled = await api.call("POST", f"/api/v1/campaigns/{campaign}/cancel", "marketing")
    assert (status, cancelled["status"]) == (200, "cancelled")
    assert await send_all(hub) == 0
    stats = await _stats(api, campaign)
    assert (stats["blocked"], stats["sent"], stats["queued"]) == (2, 0, 0)
    assert smtp_server.received == []


async def test_expansion_interrupted_mid_way_goes_on_and_queues_nobody_twice(
    api: Api, hub: Hub, smtp_server: SmtpServer
) -> None:
    await _audience(api, hub)
    campaign = await _campaign(api)
    settings = hub.settings.model_copy(
        update={"campaigns": hub.settings.campaigns.model_copy(update={"chunk": 2})}
    )
    chunks: list[int] = []

    def crash_after_two_chunks(n: int) -> None:
        chunks.append(n)
        if len(chunks) == 2:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        await start_run(hub.db, settings, campaign, progress=crash_after_two_chunks)
    async with hub.db.read() as s:
        conn = await s.connection()
        run = (await conn.execute(select(campaign_run_t))).one()
        queued = (await conn.execute(select(func.count()).select_from(outbox_t))).scalar_one()
    assert (run.status, run.audience, queued) == ("expanding", 4, 1)  # Anna; Bernd..Dora left out
    assert await start_run(hub.db, settings, campaign) == run.id  # resumes the same run
    async with hub.db.read() as s:
        conn = await s.connection()
        run = (await conn.execute(select(campaign_run_t))).one()
        rows = (
            (await conn.execute(select(outbox_t.c.recipient).order_by(outbox_t.c.recipient)))
            .scalars()
            .all()
        )
    assert (run.status, run.audience, run.queued) == ("sending", 6, 2)
    assert rows == ["anna@example.org", "frida@example.org"]
    assert await send_all(hub) == 2


async def test_bad_campaigns_are_refused_and_nothing_is_stored(api: Api, hub: Hub) -> None:
    segment = await create(api, "/api/v1/segments", {"name": "all", "filter": {}})
    sms_template = await create(
        api, "/api/v1/templates", {"name": "t-sms", "channel": "sms", "body": "Hallo"}
    )
    base = {"name": "x", "channel": "email", "segment_id": segment}
    for body, status, words in [
        ({**base, "steps": [{"kind": "send", "template_id": sms_template}]}, 422, "is for sms"),
        ({**base, "steps": [{"kind": "replied", "task_title": "call"}]}, 422, "steps[0]"),
        ({**base, "steps": [{"kind": "send"}]}, 422, "template_id"),
        (
            {
                **base,
                "steps": [{"kind": "send", "template_id": sms_template}],
                "schedule": {"kind": "at", "at": "2026-03-29T02:30:00"},
            },
            422,
            "does not exist in Europe/Berlin",
        ),
        ({**base, "steps": [], "colour": "red"}, 422, "colour"),
    ]:
        got, answer = await api.call("POST", "/api/v1/campaigns", "marketing", json=body)
        assert got == status and words in str(answer), (body, answer)
    assert (await api.call("POST", "/api/v1/campaigns", "agent", json=base))[0] in (403, 422)
    assert (await api.call("GET", "/api/v1/campaigns", "marketing"))[1] == {"items": []}


async def test_two_dispatchers_send_each_message_once(
    api: Api, hub: Hub, smtp_server: SmtpServer
) -> None:
    """Two nodes' dispatchers over one database: FOR UPDATE SKIP LOCKED on PostgreSQL
    (SQLite has one writer) hands each row to one of them."""
    from hub.outbox.dispatcher import Dispatcher
    from hub.outbox.queue import senders_from

    for n in range(30):
        body = {
            "name": f"Kunde {n}",
            "team_id": api.team_ids["Support"],
            "tags": ["newsletter"],
            "emails": [f"k{n}@example.org"],
            "custom": {"code": str(n)},
        }
        await create(api, "/api/v1/customers", body, as_="admin")
    campaign = await _campaign(api)
    await start_run(hub.db, hub.settings, campaign)
    other = Dispatcher(hub.db, hub.settings.outbox, senders_from(hub.settings), hub.bus)
    try:
        rounds = [hub.dispatcher.run_once(), other.run_once()] * 10
        while sum(await asyncio.gather(*rounds)):
            rounds = [hub.dispatcher.run_once(), other.run_once()] * 10
    finally:
        for sender in other.senders.values():
            await sender.close()
    got = sorted(r for m in smtp_server.received for r in m.rcpt_tos)
    assert got == sorted(f"k{n}@example.org" for n in range(30))
    assert (await _stats(api, campaign))["sent"] == 30
