"""Generic PBX webhook end to end: token, state machine in every order, one history entry."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from hub.events.pops import CARDS
from hub.records.auth import create_user
from hub.records.lookup import asked_number, pop_cards
from hub.runtime import Hub
from hub.store.db import Database
from hub.store.models import Customer, Interaction, PhoneCall, Role, Task
from tests.calls.support import CALLER, SALES_LINE, post_pbx, voice_client
from tests.support.sms import count, rows

pytestmark = pytest.mark.db


@pytest.fixture
async def client(db_url: str, db: Database) -> AsyncIterator[tuple[TestClient[Any, Any], Hub]]:
    async with voice_client(db_url) as pair:
        yield pair


def event(kind: str, call_id: str = "c1", **extra: Any) -> dict[str, Any]:
    body = {"event": kind, "callId": call_id, "from": CALLER, "to": SALES_LINE, "direction": "in"}
    return {**body, **extra}


NEW = event("newCall", user=["alice", "201"])
ANSWER = event("answer", user="201")
HANGUP = event("hangup", cause="normalClearing")


async def calls(db: Database) -> list[tuple[Any, ...]]:
    return await rows(
        db, select(PhoneCall.state, PhoneCall.answered_by, PhoneCall.ringing, PhoneCall.cause)
    )


async def test_wrong_or_missing_token_stores_nothing(
    client: tuple[TestClient[Any, Any], Hub], db: Database
) -> None:
    c, _ = client
    assert (await post_pbx(c, NEW, token="wrong")).status == 403
    assert (await c.post("/webhooks/cti/", json=NEW)).status in (404, 405)
    assert (await count(db, PhoneCall), await count(db, Interaction)) == (0, 0)


async def test_malformed_body_is_400_with_reason(
    client: tuple[TestClient[Any, Any], Hub], db: Database
) -> None:
    c, _ = client
    resp = await c.post(
        "/webhooks/cti/pbx-token-123",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert resp.status == 400
    assert "error" in await resp.json()
    resp = await post_pbx(c, {"event": "explode", "callId": "x"})
    assert resp.status == 400
    assert await count(db, PhoneCall) == 0


@pytest.mark.parametrize("order", list(itertools.permutations(["new", "answer", "hangup"])))
async def test_every_order_with_duplicates_ends_answered_with_one_entry(
    client: tuple[TestClient[Any, Any], Hub], db: Database, order: tuple[str, ...]
) -> None:
    c, hub = client
    alice = await create_user(hub.db, "alice", role=Role.AGENT, teams=["Sales"])
    bob = await create_user(hub.db, "bob", role=Role.AGENT, teams=["Sales"], phone_extension="201")
    bodies = {"new": NEW, "answer": ANSWER, "hangup": HANGUP}
    for name in (*order, *order):  # every event twice
        resp = await post_pbx(c, bodies[name])
        assert resp.status == 200, await resp.text()
        assert await resp.json() == {}
    [(state, answered_by, ringing, cause)] = await calls(db)
    # An answer after the hangup keeps the state (missed) but records who answered.
    late = order.index("hangup") < order.index("answer")
    assert (state, answered_by) == ("missed" if late else "ended", "201")
    if order[0] == "new":
        assert ringing == ["alice", "201"]
    assert cause == "normal"
    [(direction, channel, meta)] = await rows(
        db, select(Interaction.direction, Interaction.channel, Interaction.meta)
    )
    assert (direction, channel) == ("in", "phone")
    assert meta["call"]["answered_by_user_id"] == bob.id
    assert meta["call"]["missed"] is late
    if order[0] == "new":
        assert meta["call"]["ringing_user_ids"] == [alice.id, bob.id]
    # A late answer closes the call-back the hangup made: someone did speak to them.
    assert await rows(db, select(Task.done)) == ([(True,)] if late else [])
    assert [(k,) for (k,) in await rows(db, select(Customer.kind))] == [("lead",)]


async def test_missed_call_creates_callback_and_answered_callback_closes_it(
    client: tuple[TestClient[Any, Any], Hub], db: Database
) -> None:
    c, _ = client
    assert (await post_pbx(c, event("newCall", "m1"))).status == 200
    assert (await post_pbx(c, event("hangup", "m1", cause="noAnswer"))).status == 200
    assert await calls(db) == [("missed", None, [], "no_answer")]
    [(title, done)] = await rows(db, select(Task.title, Task.done))
    assert (title, done) == ("Rückruf", False)
    # The customer's call back, outbound from the PBX: the task is done.
    out = {"event": "newCall", "callId": "o1", "from": SALES_LINE, "to": CALLER}
    assert (await post_pbx(c, {**out, "direction": "out"})).status == 200
    assert await rows(db, select(Task.title, Task.done)) == [("Rückruf", True)]
    assert await count(db, Interaction) == 2
    assert await count(db, Customer) == 1


async def test_answered_inbound_call_closes_open_callback(
    client: tuple[TestClient[Any, Any], Hub], db: Database
) -> None:
    c, _ = client
    await post_pbx(c, event("hangup", "m2", cause="cancel"))  # never saw newCall: still logged
    assert await calls(db) == [("missed", None, [], "cancel")]
    assert await rows(db, select(Task.done)) == [(False,)]
    await post_pbx(c, event("newCall", "a2"))
    await post_pbx(c, event("answer", "a2", user="zz9"))  # unknown PBX user kept raw
    assert await rows(db, select(Task.done)) == [(True,)]
    [(_, answered, _, _)] = [r for r in await calls(db) if r[0] == "answered"]
    assert answered == "zz9"


async def test_anonymous_caller_is_logged_never_matched(
    client: tuple[TestClient[Any, Any], Hub], db: Database
) -> None:
    c, _ = client
    assert (await post_pbx(c, {**event("newCall", "anon"), "from": "anonymous"})).status == 200
    assert (await post_pbx(c, {**event("hangup", "anon"), "from": "anonymous"})).status == 200
    assert await rows(db, select(PhoneCall.state, PhoneCall.customer_id)) == [("missed", None)]
    assert (await count(db, Customer), await count(db, Interaction), await count(db, Task)) == (
        0,
        0,
        0,
    )


async def test_blocked_number_is_rejected_busy(
    client: tuple[TestClient[Any, Any], Hub], db: Database
) -> None:
    c, _ = client
    resp = await post_pbx(c, {**event("newCall", "b1"), "from": "030 6660000"})
    assert await resp.json() == {"action": "reject", "reason": "busy"}


async def test_a_queue_routes_the_pop_to_its_teams_online_agents(
    client: tuple[TestClient[Any, Any], Hub], db: Database
) -> None:
    """voice.pbx.queues maps "Hotline-Sales" to Sales: a call through it that names no
    agent pops for Sales' online agents (and its unknown caller is a Sales lead); the
    answer closes the pop for the same agents. Without a queue the number's team pops."""
    http, hub = client
    ids = {}
    for name, team in (("sales1", "Sales"), ("sales2", "Sales"), ("sup1", "Support")):
        ids[name] = (
            await create_user(db, name, role=Role.AGENT, teams=[team], password_cost=12)
        ).id
    hub.presence.connected(ids["sales1"])
    hub.presence.connected(ids["sup1"])  # sales2 is offline
    support_line = "+49305559999"  # not in teams.by_address: the default team, Support
    async with hub.bus.subscribe() as sub:
        ring = event("newCall", "q1", to=support_line, queue="hotline-sales")
        assert (await post_pbx(http, ring)).status == 200
        answer = event("answer", "q1", to=support_line, user="sales1")
        assert (await post_pbx(http, answer)).status == 200
        plain = {**event("newCall", "q2", to=support_line), "from": "+4917155500002"}
        assert (await post_pbx(http, plain)).status == 200
        seen = []
        while not sub.empty():
            e = sub.get_nowait()
            if e.kind.startswith("call."):
                seen.append((e.kind, e.data["call_id"], e.users))
    assert seen == [
        ("call.ringing", "q1", frozenset({ids["sales1"]})),
        ("call.answered", "q1", frozenset({ids["sales1"]})),
        ("call.ringing", "q2", frozenset({ids["sup1"]})),
    ]
    teams = await rows(db, select(Customer.team_id).order_by(Customer.id))
    sales = await rows(
        db, select(PhoneCall.call_id, PhoneCall.route_team_id).order_by(PhoneCall.id)
    )
    assert sales[0][0] == "q1" and sales[0][1] is not None and sales[1] == ("q2", None)
    assert teams == [(sales[0][1],), (hub.teams.default_team_id,)]


async def test_a_pop_carries_cards_read_in_its_calls_transaction(
    client: tuple[TestClient[Any, Any], Hub], db: Database
) -> None:
    """The ringing event brings its caller cards (read with the call's own writes, so the
    stream sends the pop without a read of its own), and they are what a read after the
    commit gives: the customer with this call in the history and its open conversation."""
    http, hub = client
    alice = await create_user(db, "alice", role=Role.AGENT, teams=["Sales"], password_cost=12)
    async with hub.bus.subscribe() as sub:
        assert (await post_pbx(http, event("newCall", "p1", user="alice"))).status == 200
        assert (await post_pbx(http, event("newCall", "p1", user="alice"))).status == 200
        ringing = []
        while not sub.empty():
            e = sub.get_nowait()
            if e.kind == "call.ringing":
                ringing.append(e)
    assert [(e.data["call_id"], e.users) for e in ringing] == [("p1", frozenset({alice.id}))]
    cards = ringing[0].cache[CARDS]
    customer = ringing[0].data["customer_id"]
    async with db.read() as s:
        after = await pop_cards(
            await s.connection(),
            [(customer, asked_number(CALLER, hub.settings.identity.default_region))],
        )
    assert cards == after[(0, customer)]
    assert [i["text"] for i in cards.known["recent_interactions"]] == ["Incoming call"]
    assert [c["channel"] for c in cards.known["open_conversations"]] == ["phone"]
    assert cards.other_team["status"] == "other_team"
