"""Twilio Voice and sipgate.io end to end: exact signing/auth, every order, events, answers."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from hub.events.bus import Event
from hub.records.auth import create_user
from hub.runtime import Hub
from hub.store.db import Database
from hub.store.models import Customer, Interaction, PhoneCall, Role, Task
from tests.calls.support import (
    CALLER,
    PUBLIC,
    SALES_LINE,
    basic,
    post_sipgate,
    post_twilio,
    sipgate_answer,
    sipgate_hangup,
    sipgate_new,
    voice_client,
)
from tests.support.sms import count, rows

pytestmark = pytest.mark.db

PARENT = "CA" + "1" * 32


@pytest.fixture
async def client(db_url: str, db: Database) -> AsyncIterator[tuple[TestClient[Any, Any], Hub]]:
    async with voice_client(db_url) as pair:
        yield pair


def collect(hub: Hub) -> list[Event]:
    seen: list[Event] = []
    original = hub.bus.publish

    def publish(event: Event) -> None:
        seen.append(event)
        original(event)

    hub.bus.publish = publish  # type: ignore[method-assign]
    return seen


async def call_rows(db: Database) -> list[tuple[Any, ...]]:
    return await rows(db, select(PhoneCall.provider, PhoneCall.state, PhoneCall.answered_by))


# -- sipgate.io --


async def test_sipgate_wrong_or_missing_basic_auth_stores_nothing(
    client: tuple[TestClient[Any, Any], Hub], db: Database
) -> None:
    c, _ = client
    wrong = await post_sipgate(c, sipgate_new("s0"), auth=basic("sipgate", "nope"))
    missing = await c.post("/webhooks/sipgate", data=sipgate_new("s0"))
    assert (wrong.status, missing.status) == (403, 401)
    assert (await count(db, PhoneCall), await count(db, Interaction)) == (0, 0)


async def test_sipgate_new_call_answers_xml_with_callbacks(
    client: tuple[TestClient[Any, Any], Hub], db: Database
) -> None:
    c, _ = client
    resp = await post_sipgate(c, sipgate_new("s1"))
    assert (resp.status, resp.content_type) == (200, "application/xml")
    url = PUBLIC + "/webhooks/sipgate"
    assert await resp.text() == (
        f'<?xml version="1.0" encoding="UTF-8"?><Response onAnswer="{url}" onHangup="{url}"/>'
    )
    assert await call_rows(db) == [("sipgate", "ringing", None)]


async def test_sipgate_malformed_push_is_400(
    client: tuple[TestClient[Any, Any], Hub], db: Database
) -> None:
    c, _ = client
    resp = await post_sipgate(c, [("event", "newCall")])
    assert resp.status == 400
    assert "callId" in (await resp.json())["detail"]
    assert await count(db, PhoneCall) == 0


@pytest.mark.parametrize("order", list(itertools.permutations(["new", "answer", "hangup"])))
async def test_sipgate_every_order_with_duplicates(
    client: tuple[TestClient[Any, Any], Hub], db: Database, order: tuple[str, ...]
) -> None:
    c, _ = client
    bodies = {
        "new": sipgate_new("s2"),
        "answer": sipgate_answer("s2"),
        "hangup": sipgate_hangup("s2"),
    }
    for name in (*order, *order):
        assert (await post_sipgate(c, bodies[name])).status == 200
    late = order.index("hangup") < order.index("answer")
    assert await call_rows(db) == [("sipgate", "missed" if late else "ended", "w0")]
    assert await count(db, Interaction) == 1
    assert await rows(db, select(Task.done)) == ([(True,)] if late else [])


async def test_sipgate_pop_goes_to_ringing_agents_and_closes_on_answer(
    client: tuple[TestClient[Any, Any], Hub], db: Database
) -> None:
    c, hub = client
    alice = await create_user(hub.db, "alice", role=Role.AGENT, teams=["Sales"])
    async with hub.db.write() as s:
        alice.pbx_id = "w0"
        s.add(alice)
    await create_user(hub.db, "bob", role=Role.AGENT, teams=["Sales"])
    seen = collect(hub)
    await post_sipgate(c, sipgate_new("s3", users=("w0",)))
    await post_sipgate(c, sipgate_new("s3", users=("w0",)))  # duplicate: no second pop
    await post_sipgate(c, sipgate_answer("s3"))
    await post_sipgate(c, sipgate_hangup("s3"))
    calls = [e for e in seen if e.kind.startswith("call.")]
    assert [e.kind for e in calls] == ["call.ringing", "call.answered", "call.ended"]
    assert all(e.users == frozenset({alice.id}) for e in calls)
    [(customer_id, team_id)] = await rows(db, select(Customer.id, Customer.team_id))
    ringing = calls[0]
    assert ringing.team_id == team_id
    assert ringing.data["customer_id"] == customer_id
    assert ringing.data["ringing_user_ids"] == [alice.id]
    assert (ringing.data["from"], ringing.data["to"]) == (CALLER[1:], SALES_LINE[1:])
    assert calls[1].data["answered_user_id"] == alice.id
    # The call's history entry is announced by its call events, to the agents it
    # concerns, not by an interaction.created to bob and the rest of the team.
    [(interaction_id, conversation_id)] = await rows(
        db, select(Interaction.id, Interaction.conversation_id)
    )
    assert [e.kind for e in seen if e.kind.startswith("interaction.")] == []
    assert [
        (e.data["interaction_id"], e.data["conversation_id"], e.data["created_customer"])
        for e in calls
    ] == [
        (interaction_id, conversation_id, True),  # the unknown caller became a lead
        (interaction_id, conversation_id, False),
        (interaction_id, conversation_id, False),
    ]


async def test_missed_call_publishes_missed_and_task_created(
    client: tuple[TestClient[Any, Any], Hub], db: Database
) -> None:
    c, hub = client
    seen = collect(hub)
    await post_sipgate(c, sipgate_new("s4", users=()))
    await post_sipgate(c, sipgate_hangup("s4", cause="cancel"))
    kinds = [e.kind for e in seen if e.kind.startswith(("call.", "task."))]
    assert kinds == ["call.ringing", "call.missed", "task.created"]
    [(task_id, title)] = await rows(db, select(Task.id, Task.title))
    assert seen[-1].data["task_id"] == task_id and title == "Rückruf"


# -- Twilio Voice --


def incoming(**extra: str) -> dict[str, str]:
    return {
        "AccountSid": "AC" + "0" * 32,
        "CallSid": PARENT,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "From": CALLER,
        "To": SALES_LINE,
        **extra,
    }


def leg(status: str, to: str = "client:alice") -> dict[str, str]:
    return {
        "AccountSid": "AC" + "0" * 32,
        "CallSid": "CA" + "2" * 32,
        "ParentCallSid": PARENT,
        "CallStatus": status,
        "Direction": "outbound-dial",
        "From": CALLER,
        "To": to,
    }


async def test_twilio_unsigned_or_wrongly_signed_stores_nothing(
    client: tuple[TestClient[Any, Any], Hub], db: Database
) -> None:
    c, _ = client
    wrong = await post_twilio(c, "/webhooks/twilio/voice", incoming(), token="other")
    unsigned = await c.post("/webhooks/twilio/voice", data=incoming())
    assert (wrong.status, unsigned.status) == (403, 403)
    assert (await count(db, PhoneCall), await count(db, Interaction)) == (0, 0)


async def test_twilio_incoming_call_dials_online_team_agents(
    client: tuple[TestClient[Any, Any], Hub], db: Database
) -> None:
    c, hub = client
    alice = await create_user(hub.db, "alice", role=Role.AGENT, teams=["Sales"])
    await create_user(hub.db, "bob", role=Role.AGENT, teams=["Sales"])  # offline
    hub.presence.connected(alice.id or 0)
    seen = collect(hub)
    resp = await post_twilio(c, "/webhooks/twilio/voice", incoming())
    assert (resp.status, resp.content_type) == (200, "text/xml")
    body = await resp.text()
    assert "<Client" in body and "alice</Client>" in body and "bob" not in body
    assert f'statusCallback="{PUBLIC}/webhooks/twilio/voice/status"' in body
    [ringing] = [e for e in seen if e.kind == "call.ringing"]
    assert ringing.users == frozenset({alice.id})


async def test_twilio_nobody_online_hangs_up_and_logs_missed_on_status(
    client: tuple[TestClient[Any, Any], Hub], db: Database
) -> None:
    c, _ = client
    resp = await post_twilio(c, "/webhooks/twilio/voice", incoming())
    assert "<Hangup" in await resp.text()
    status = incoming(CallStatus="no-answer")
    assert (await post_twilio(c, "/webhooks/twilio/voice/status", status)).status == 204
    assert await call_rows(db) == [("twilio", "missed", None)]
    assert await rows(db, select(Task.title, Task.done)) == [("Rückruf", False)]


@pytest.mark.parametrize("order", list(itertools.permutations(["voice", "answer", "completed"])))
async def test_twilio_every_order_with_duplicates(
    client: tuple[TestClient[Any, Any], Hub], db: Database, order: tuple[str, ...]
) -> None:
    c, _ = client
    posts = {
        "voice": ("/webhooks/twilio/voice", incoming()),
        "answer": ("/webhooks/twilio/voice/status", leg("in-progress")),
        "completed": ("/webhooks/twilio/voice/status", incoming(CallStatus="completed")),
    }
    for name in (*order, *order):
        path, form = posts[name]
        assert (await post_twilio(c, path, form)).status in (200, 204)
    late = order.index("completed") < order.index("answer")
    assert await call_rows(db) == [("twilio", "missed" if late else "ended", "alice")]
    assert await count(db, Interaction) == 1


async def test_twilio_round_robin_among_online_team_agents(
    client: tuple[TestClient[Any, Any], Hub], db: Database
) -> None:
    c, hub = client
    alice = await create_user(hub.db, "alice", role=Role.AGENT, teams=["Sales"])
    bob = await create_user(hub.db, "bob", role=Role.AGENT, teams=["Sales"])
    for user in (alice, bob):
        hub.presence.connected(user.id or 0)
    rung = []
    for sid in ("CA" + "3" * 32, "CA" + "4" * 32, "CA" + "5" * 32):
        resp = await post_twilio(c, "/webhooks/twilio/voice", incoming(CallSid=sid))
        body = await resp.text()
        rung.append(
            "alice" if "alice</Client>" in body else "bob" if "bob</Client>" in body else ""
        )
    assert rung == ["alice", "bob", "alice"]
    # The ringing agent is stored, so the leg's answer names a known agent.
    assert await rows(db, select(PhoneCall.ringing).order_by(PhoneCall.id)) == [
        (["alice"],),
        (["bob"],),
        (["alice"],),
    ]
