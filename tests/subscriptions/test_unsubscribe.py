"""`/u/{token}`: a confirm page on GET, RFC 8058 one-click POST, idempotent, no login
and no cookies, recorded in the consent record with source and time, forged links refused."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from hub.events.kinds import EventKind
from hub.runtime import Hub
from hub.store.tables import consent_t, identity_t
from hub.subscriptions.links import unsubscribe_headers
from hub.subscriptions.tokens import make_token
from tests.subscriptions.conftest import PUBLIC_URL, TOKEN_KEY
from tests.support.api import Api

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def _customer(api: Api) -> tuple[int, int]:
    status, body = await api.call(
        "POST", "/api/v1/customers", json={"name": "Anna", "emails": ["anna@example.org"]}
    )
    assert status == 201
    return body["id"], 0


async def _identity(hub: Hub, customer_id: int) -> int:
    async with hub.db.read() as s:
        found = await (await s.connection()).execute(
            select(identity_t.c.id).where(identity_t.c.customer_id == customer_id)
        )
        return int(found.scalar_one())


async def _consent(hub: Hub) -> list[tuple[Any, ...]]:
    async with hub.db.read() as s:
        rows = await (await s.connection()).execute(
            select(
                consent_t.c.customer_id,
                consent_t.c.channel,
                consent_t.c.purpose,
                consent_t.c.state,
                consent_t.c.source,
            ).order_by(consent_t.c.id)
        )
        return [tuple(r) for r in rows]


async def test_get_shows_one_button_and_changes_nothing(api: Api, hub: Hub) -> None:
    cid, _ = await _customer(api)
    token = make_token(TOKEN_KEY, cid, await _identity(hub, cid), 7)
    resp = await api.client.get(f"/u/{token}", headers={"Accept-Language": "de-DE,de;q=0.9"})
    html = await resp.text()
    assert resp.status == 200
    assert resp.content_type == "text/html"
    assert "Set-Cookie" not in resp.headers
    assert resp.headers["Content-Security-Policy"].startswith(
        "default-src 'self'; script-src 'self'"
    )
    assert f'<form method="post" action="/u/{token}">' in html
    assert html.count("<button") == 1 and "Ja, abmelden" in html
    assert "<script" not in html
    assert await _consent(hub) == []


async def test_one_click_post_unsubscribes_at_once_and_is_idempotent(api: Api, hub: Hub) -> None:
    cid, _ = await _customer(api)
    ident = await _identity(hub, cid)
    url, headers = unsubscribe_headers(hub.settings, cid, ident, 7)
    assert url.startswith(f"{PUBLIC_URL}/u/")
    token = url.rsplit("/", 1)[1]
    assert headers == {
        "List-Unsubscribe": f"<{url}>, "
        f"<mailto:unsubscribe@example.com?subject=unsubscribe%20{token}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    async with hub.bus.subscribe() as events:
        for _ in range(2):  # the provider's POST, then the customer's click: one opt-out
            resp = await api.client.post(
                f"/u/{token}", data="List-Unsubscribe=One-Click", headers=FORM
            )
            assert resp.status == 200
            assert "Set-Cookie" not in resp.headers
        published = [events.get_nowait() for _ in range(events.qsize())]
    assert await _consent(hub) == [
        (cid, "email", "marketing", "opted_out", "one-click unsubscribe (RFC 8058), campaign 7")
    ]
    assert [(e.kind, e.data) for e in published] == [
        (
            EventKind.CONSENT_CHANGED,
            {
                "customer_id": cid,
                "channel": "email",
                "purpose": "marketing",
                "state": "opted_out",
                "source": "one-click unsubscribe (RFC 8058), campaign 7",
            },
        )
    ]
    status, body = await api.call("GET", f"/api/v1/customers/{cid}")
    assert status == 200
    assert [(c["channel"], c["purpose"], c["state"]) for c in body["consent"]] == [
        ("email", "marketing", "opted_out")
    ]
    assert body["consent"][0]["recorded_at"]


async def test_without_a_campaign_every_purpose_in_force_is_opted_out(api: Api, hub: Hub) -> None:
    cid, _ = await _customer(api)
    await api.call(
        "POST",
        f"/api/v1/customers/{cid}/consent",
        json={"channel": "email", "purpose": "newsletter", "state": "opted_in", "source": "form"},
    )
    token = make_token(TOKEN_KEY, cid, None, None)
    resp = await api.client.post(f"/u/{token}", data="confirm=1", headers=FORM)
    assert resp.status == 200
    assert "You are unsubscribed" in await resp.text()
    assert (await _consent(hub))[1:] == [
        (cid, "email", "marketing", "opted_out", "unsubscribe page"),
        (cid, "email", "newsletter", "opted_out", "unsubscribe page"),
    ]


async def test_forged_links_are_refused_and_change_nothing(api: Api, hub: Hub) -> None:
    cid, _ = await _customer(api)
    good = make_token(TOKEN_KEY, cid, None, None)
    forged = [
        make_token("another-key-0123456789abcdef", cid, None, None),
        good[:-2] + ("AA" if not good.endswith("AA") else "BB"),
        ".".join(["u", "zz", *good.split(".")[2:]]),  # another customer, the same MAC
        "not-a-token",
    ]
    for token in forged:
        for method in ("GET", "POST"):
            resp = await api.client.request(
                method, f"/u/{token}", data="List-Unsubscribe=One-Click", headers=FORM
            )
            assert resp.status == 400, token
            assert "not valid" in await resp.text()
    assert await _consent(hub) == []


async def test_an_erased_customer_still_gets_a_calm_answer(api: Api, hub: Hub) -> None:
    token = make_token(TOKEN_KEY, 4242, None, None)
    resp = await api.client.post(f"/u/{token}", data="List-Unsubscribe=One-Click", headers=FORM)
    assert resp.status == 200
    assert await _consent(hub) == []


async def test_consent_history_is_visible_with_source_and_time(api: Api, hub: Hub) -> None:
    cid, _ = await _customer(api)
    status, _ = await api.call(
        "POST",
        f"/api/v1/customers/{cid}/consent",
        "agent",
        json={"channel": "email", "purpose": "newsletter", "state": "opted_in", "source": "fair"},
    )
    assert status == 201
    token = make_token(TOKEN_KEY, cid, None, 3)
    resp = await api.client.post(f"/u/{token}", data="List-Unsubscribe=One-Click", headers=FORM)
    assert resp.status == 200
    status, body = await api.call("GET", f"/api/v1/customers/{cid}/consent", "agent")
    assert status == 200
    shown = [(c["channel"], c["purpose"], c["state"], c["source"]) for c in body["history"]]
    # No campaign table says campaign 3's purpose: every purpose in force is opted out.
    assert shown == [
        ("email", "newsletter", "opted_out", "one-click unsubscribe (RFC 8058), campaign 3"),
        ("email", "marketing", "opted_out", "one-click unsubscribe (RFC 8058), campaign 3"),
        ("email", "newsletter", "opted_in", "fair"),
    ]
    assert all(c["recorded_at"].endswith("+00:00") for c in body["history"])
    assert [(c["purpose"], c["state"]) for c in body["consent"]] == [
        ("marketing", "opted_out"),
        ("newsletter", "opted_out"),
    ]
    assert (await api.call("GET", f"/api/v1/customers/{cid}/consent", "sales_agent"))[0] == 404


async def test_mail_to_the_mailto_address_opts_its_sender_out(api: Api, hub: Hub) -> None:
    from channels.base import Channel, InboundContact
    from hub.store.tables import interaction_t

    cid, _ = await _customer(api)
    _, headers = unsubscribe_headers(hub.settings, cid, None, 4)
    assert "<mailto:unsubscribe@example.com?subject=unsubscribe%20u." in headers["List-Unsubscribe"]
    for n, recipient in enumerate(("Unsubscribe@Example.com", "support@example.com")):
        result = await hub.ingestor.ingest(
            InboundContact(
                channel=Channel.EMAIL,
                sender="Anna <ANNA@example.org>",
                recipient=recipient,
                subject="unsubscribe u.1.2.3",
                text="",
                provider_id=f"<unsub{n}@example.org>",
            )
        )
        assert result.customer_id == cid
    assert await _consent(hub) == [
        (cid, "email", "marketing", "opted_out", "mailto unsubscribe (List-Unsubscribe)")
    ]
    async with hub.db.read() as s:
        rows = await (await s.connection()).execute(
            select(interaction_t.c.recipient, interaction_t.c.conversation_id).order_by(
                interaction_t.c.id
            )
        )
        stored = [tuple(r) for r in rows]
    # Recorded in the history, but the unsubscribe opened no conversation.
    assert stored[0] == ("Unsubscribe@Example.com", None)
    assert stored[1][1] is not None
