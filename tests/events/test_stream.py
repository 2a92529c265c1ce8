"""/api/v1/events: each user gets exactly the events they may see, live and after a reconnect."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import WSMsgType

from channels.base import Channel, InboundContact
from hub.events.bus import Event
from hub.records.auth import Principal
from hub.runtime import Hub
from hub.store.models import Role
from tests.support.api import Api

pytestmark = pytest.mark.db

WAIT = 10.0  # a deadline for a frame that must come, not a speed assertion


async def _connect(api: Api, user: str, **params: Any) -> Any:
    headers = {"Authorization": f"Bearer {api.tokens[user]}"}
    return await api.client.ws_connect("/api/v1/events", headers=headers, params=params)


async def _frame(ws: Any) -> dict[str, Any]:
    msg = await ws.receive(timeout=WAIT)
    assert msg.type == WSMsgType.TEXT, msg
    frame: dict[str, Any] = msg.json()
    return frame


async def _nothing(ws: Any) -> None:
    """No frame is waiting: a marker event everyone receives must come first."""
    frame = await _frame(ws)
    assert frame["kind"] == "test.marker", frame


async def _online(hub: Hub, user_id: int) -> None:
    for _ in range(200):
        if hub.presence.is_online(user_id):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never online")


async def test_a_pop_reaches_only_the_agents_it_rings_at(api: Api, hub: Hub) -> None:
    support = api.team_ids["Support"]
    sockets = {u: await _connect(api, u) for u in ("agent", "sup", "sales_agent", "admin")}
    for user in sockets:
        await _online(hub, api.user_ids[user])
    hub.bus.publish(
        Event(
            "call.ringing",
            {"call_id": "c1", "from": "+4930123"},
            team_id=support,
            users=frozenset({api.user_ids["agent"]}),
        )
    )
    hub.bus.publish(Event("test.marker", {}, team_id=None, users=frozenset(api.user_ids.values())))
    pop = await _frame(sockets["agent"])
    assert pop["kind"] == "call.ringing"
    assert {k: pop["data"][k] for k in ("call_id", "from")} == {"call_id": "c1", "from": "+4930123"}
    assert pop["data"]["caller"]["status"] == "unknown"
    assert isinstance(pop["id"], int)
    await _nothing(sockets["agent"])
    for user in ("sup", "sales_agent", "admin"):  # same team, other team, admin: no pop
        await _nothing(sockets[user])
    for ws in sockets.values():
        await ws.close()


async def test_the_pop_carries_the_caller_card_built_for_each_agent(api: Api, hub: Hub) -> None:
    """One pop, three recipients: the customer's team and an admin see the card, an
    agent of another team (the call rings there too) sees the team and name only."""
    known = await hub.ingestor.ingest(
        InboundContact(Channel.SMS, "+491715551234", text="hello", provider_id="SMc1")
    )
    sockets = {u: await _connect(api, u) for u in ("agent", "sales_agent", "admin")}
    for user in sockets:
        await _online(hub, api.user_ids[user])
    hub.bus.publish(
        Event(
            "call.ringing",
            {"call_id": "c2", "from": "+491715551234", "customer_id": known.customer_id},
            team_id=api.team_ids["Support"],
            users=frozenset(api.user_ids[u] for u in sockets),
        )
    )
    cards = {}
    for user, ws in sockets.items():
        frame = await _frame(ws)
        assert frame["kind"] == "call.ringing", (user, frame)
        cards[user] = frame["data"]["caller"]
    for user in ("agent", "admin"):
        assert cards[user]["status"] == "known"
        assert cards[user]["customer"]["id"] == known.customer_id
        assert [i["text"] for i in cards[user]["recent_interactions"]] == ["hello"]
    assert cards["sales_agent"] == {
        "status": "other_team",
        "phone": "+491715551234",
        "international": "+49 171 5551234",
        "country": "DE",
        "customer": {"name": ""},
        "team": {"id": api.team_ids["Support"], "name": "Support"},
        "open_conversations": [],
        "recent_interactions": [],
        "open_tasks": [],
    }
    # A withheld number with a customer the PBX already resolved still pops that customer.
    hub.bus.publish(
        Event(
            "call.ringing",
            {"call_id": "c3", "from": "anonymous", "customer_id": known.customer_id},
            team_id=api.team_ids["Support"],
            users=frozenset({api.user_ids["agent"]}),
        )
    )
    card = (await _frame(sockets["agent"]))["data"]["caller"]
    assert (card["status"], card["phone"], card["customer"]["id"]) == (
        "known",
        "anonymous",
        known.customer_id,
    )
    for ws in sockets.values():
        await ws.close()


async def test_history_events_reach_the_customers_team_and_admins_only(api: Api, hub: Hub) -> None:
    sockets = {u: await _connect(api, u) for u in ("agent", "sales_agent", "admin")}
    for user in sockets:
        await _online(hub, api.user_ids[user])
    result = await hub.ingestor.ingest(
        InboundContact(Channel.SMS, "+491715551234", provider_id="SMs1")
    )
    hub.bus.publish(Event("test.marker", {}, users=frozenset(api.user_ids.values())))
    for user in ("agent", "admin"):
        frame = await _frame(sockets[user])
        assert frame["kind"] == "interaction.created"
        assert frame["data"]["customer_id"] == result.customer_id
        # The new conversation went to the Support team's only online agent.
        frame = await _frame(sockets[user])
        assert (frame["kind"], frame["data"]) == (
            "conversation.assigned",
            {
                "conversation_id": result.conversation_id,
                "customer_id": result.customer_id,
                "assignee_id": api.user_ids["agent"],
            },
        )
        await _nothing(sockets[user])
    await _nothing(sockets["sales_agent"])
    for ws in sockets.values():
        await ws.close()


def hub_principal(api: Api, hub: Hub) -> Any:
    return Principal(0, "test", Role.ADMIN, frozenset())


async def test_a_reconnecting_client_gets_what_it_missed_then_live_events(
    api: Api, hub: Hub
) -> None:
    support = api.team_ids["Support"]
    ws = await _connect(api, "agent")
    await _online(hub, api.user_ids["agent"])
    hub.bus.publish(Event("test.one", {"n": 1}, team_id=support))
    first = await _frame(ws)
    await ws.close()
    hub.bus.publish(Event("test.two", {"n": 2}, team_id=support))
    hub.bus.publish(Event("test.sales", {"n": 3}, team_id=api.team_ids["Sales"]))
    hub.bus.publish(Event("test.three", {"n": 4}, team_id=support))
    # Wait until the stream stored them (a replay reads the log).
    for _ in range(200):
        if len(await hub.events.replay(hub_principal(api, hub), first["id"])) >= 3:
            break
        await asyncio.sleep(0.01)
    ws = await _connect(api, "agent", last_event_id=str(first["id"]))
    missed = [await _frame(ws), await _frame(ws)]
    assert [(f["kind"], f["data"]) for f in missed] == [
        ("test.two", {"n": 2}),
        ("test.three", {"n": 4}),
    ]
    assert first["id"] < missed[0]["id"] < missed[1]["id"]
    hub.bus.publish(Event("test.live", {"n": 5}, team_id=support))
    assert (await _frame(ws))["kind"] == "test.live"
    await ws.close()


async def test_a_browser_authenticates_in_its_first_frame(api: Api, hub: Hub) -> None:
    ws = await api.client.ws_connect("/api/v1/events")
    await ws.send_json({"token": api.tokens["agent"]})
    await _online(hub, api.user_ids["agent"])
    hub.bus.publish(Event("test.hello", {}, team_id=api.team_ids["Support"]))
    assert (await _frame(ws))["kind"] == "test.hello"
    await ws.close()

    bad = await api.client.ws_connect("/api/v1/events")
    await bad.send_json({"token": "crm_nope"})
    msg = await bad.receive(timeout=WAIT)
    assert (msg.type, bad.close_code, msg.extra) == (
        WSMsgType.CLOSE,
        4401,
        "invalid, expired or revoked token",
    )
    resp = await api.client.get("/api/v1/events", headers={"Authorization": "Bearer crm_nope"})
    assert resp.status == 401


async def test_presence_follows_connections_and_the_status_switch(api: Api, hub: Hub) -> None:
    agent = api.user_ids["agent"]
    assert await api.call("GET", "/api/v1/me/status", "agent") == (
        200,
        {"user_id": agent, "status": "available", "online": False},
    )
    ws = await _connect(api, "agent")
    await _online(hub, agent)
    assert await api.call("PUT", "/api/v1/me/status", "agent", json={"status": "away"}) == (
        200,
        {"user_id": agent, "status": "away", "online": False},
    )
    assert hub.presence.online() == frozenset()
    await api.call("PUT", "/api/v1/me/status", "agent", json={"status": "available"})
    assert hub.presence.online() == frozenset({agent})
    await ws.close()
    for _ in range(200):
        if not hub.presence.is_online(agent):
            break
        await asyncio.sleep(0.01)
    assert hub.presence.online() == frozenset()
    status, err = await api.call("PUT", "/api/v1/me/status", "agent", json={"status": "asleep"})
    assert (status, err["detail"][0]["field"]) == (422, "status")


async def test_a_pop_rendered_for_a_batch_equals_the_lookup_answer(api: Api, hub: Hub) -> None:
    """The stream renders pops for a whole batch in one read (hub/events/pops.py); each
    card must be what GET /api/v1/lookup answers the same agent, part by part."""
    from sqlalchemy import insert

    from hub.store.tables import tag_t

    numbers = ["+491715551301", "+491715551302"]
    results = []
    for n, number in enumerate(numbers):
        for k in range(6 - 3 * n):  # more than the five recent ones for the first
            results.append(
                await hub.ingestor.ingest(
                    InboundContact(Channel.SMS, number, text=f"m{k}", provider_id=f"SMr{n}{k}")
                )
            )
    first, second = results[0].customer_id, results[-1].customer_id
    async with hub.db.write() as s:
        conn = await s.connection()
        await conn.execute(
            insert(tag_t), [{"customer_id": first, "tag": t} for t in ("vip", "b2b")]
        )
    headers = {"Authorization": f"Bearer {api.tokens['agent']}"}
    made = await api.client.post(
        "/api/v1/tasks", json={"customer_id": first, "title": "Angebot"}, headers=headers
    )
    assert made.status == 201, await made.text()
    ws = await _connect(api, "agent")
    await _online(hub, api.user_ids["agent"])
    for call, (number, customer) in enumerate(zip(numbers, (first, second), strict=True)):
        hub.bus.publish(
            Event(
                "call.ringing",
                {"call_id": f"r{call}", "from": number, "customer_id": customer},
                team_id=api.team_ids["Support"],
                users=frozenset({api.user_ids["agent"]}),
            )
        )
    for number in numbers:
        card = (await _frame(ws))["data"]["caller"]
        resp = await api.client.get("/api/v1/lookup", params={"phone": number}, headers=headers)
        assert resp.status == 200
        assert card == await resp.json()
    assert [len(card["recent_interactions"]), card["customer"]["tags"]] == [3, []]
    await ws.close()
