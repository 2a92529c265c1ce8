"""Calls through the hub: one history entry per call whatever the order, call-back tasks, pops."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from channels.base import CallEvent, CallEventKind, Direction
from hub.runtime import Hub
from hub.store.tables import call_t, identity_t, interaction_t, task_t
from routing.calls import CallState
from tests.support.api import Api

pytestmark = pytest.mark.db

T0 = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
CALLER = "+4930 5550199"  # a national-ish spelling: matched as +49305550199


def ev(kind: CallEventKind, call_id: str, seconds: int, **kw: Any) -> CallEvent:
    base: dict[str, Any] = {
        "provider": "pbx",
        "call_id": call_id,
        "kind": kind,
        "from_number": CALLER,
        "to_number": "+49305550100",
        "occurred_at": T0 + timedelta(seconds=seconds),
    }
    return CallEvent(**(base | kw))


async def _calls(hub: Hub, call_id: str) -> list[Any]:
    async with hub.db.read() as s:
        conn = await s.connection()
        return list((await conn.execute(select(call_t).where(call_t.c.call_id == call_id))).all())


async def _entries(hub: Hub, call_id: str) -> list[Any]:
    async with hub.db.read() as s:
        conn = await s.connection()
        return list(
            (
                await conn.execute(
                    select(interaction_t).where(interaction_t.c.provider_id == f"pbx:{call_id}")
                )
            ).all()
        )


ANSWERED = [
    ev(CallEventKind.NEW_CALL, "x", 0, users=("agent", "101")),
    ev(CallEventKind.ANSWER, "x", 8, answered_by="agent"),
    ev(CallEventKind.HANGUP, "x", 68, cause="normalClearing"),
]


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
async def test_every_order_with_duplicates_gives_one_entry_and_the_same_end(
    hub: Hub, api: Api, order: tuple[int, ...]
) -> None:
    call_id = "call-" + "".join(map(str, order))
    events = [ANSWERED[i] for i in order]
    events = [dataclasses.replace(e, call_id=call_id) for e in events]
    for event in events + events:  # every event twice
        await hub.calls.handle(event)
    [call] = await _calls(hub, call_id)
    assert (call.state, call.answered_by, call.answered_user_id) == (
        "ended",
        "agent",
        api.user_ids["agent"],
    )
    assert call.ringing_user_ids == [api.user_ids["agent"]]
    [entry] = await _entries(hub, call_id)
    assert (entry.channel, entry.sender) == ("phone", CALLER)
    async with hub.db.read() as s:
        conn = await s.connection()
        matched = (
            (
                await conn.execute(
                    select(identity_t.c.value).where(identity_t.c.customer_id == entry.customer_id)
                )
            )
            .scalars()
            .all()
        )
    assert matched == ["+49305550199"]
    assert entry.meta["call"]["state"] == "ended"
    assert entry.meta["call"]["answered_by"] == "agent"


async def test_a_missed_call_makes_a_callback_task_that_the_next_answered_call_closes(
    hub: Hub, api: Api
) -> None:
    await hub.calls.handle(ev(CallEventKind.NEW_CALL, "m1", 0, users=("agent",)))
    outcome = await hub.calls.handle(ev(CallEventKind.HANGUP, "m1", 30, cause="cancel"))
    assert (outcome.state, outcome.changed) == (CallState.MISSED, True)
    [entry] = await _entries(hub, "m1")
    assert (entry.text, entry.meta["call"]["missed"], entry.meta["call"]["cause"]) == (
        "Missed call (canceled)",
        True,
        "canceled",
    )
    async with hub.db.read() as s:
        conn = await s.connection()
        tasks = (await conn.execute(select(task_t.c.title, task_t.c.done, task_t.c.due_at))).all()
    assert [(t.title, t.done) for t in tasks] == [(f"Rückruf: {CALLER}", False)]
    assert tasks[0].due_at == T0 + timedelta(seconds=30) + timedelta(minutes=60)
    # The customer calls again and gets through: the call-back is done.
    for e in (
        ev(CallEventKind.NEW_CALL, "m2", 600),
        ev(CallEventKind.ANSWER, "m2", 605, answered_by="101"),
    ):
        await hub.calls.handle(e)
    async with hub.db.read() as s:
        conn = await s.connection()
        assert (await conn.execute(select(task_t.c.done))).scalars().all() == [True]


async def test_a_withheld_number_is_logged_and_never_matched(hub: Hub) -> None:
    for e in (
        ev(CallEventKind.NEW_CALL, "anon", 0, from_number="anonymous"),
        ev(CallEventKind.HANGUP, "anon", 20, from_number="anonymous", cause="noAnswer"),
    ):
        await hub.calls.handle(e)
    [call] = await _calls(hub, "anon")
    assert (call.state, call.customer_id, call.interaction_id, call.cause) == (
        "missed",
        None,
        None,
        "no-answer",
    )
    async with hub.db.read() as s:
        conn = await s.connection()
        assert (await conn.execute(select(func.count()).select_from(task_t))).scalar_one() == 0


async def test_the_pop_goes_to_the_agents_it_rings_at_and_closes_on_answer(
    hub: Hub, api: Api
) -> None:
    async with hub.bus.subscribe() as sub:
        await hub.calls.handle(ev(CallEventKind.NEW_CALL, "p1", 0, users=("agent", "sup")))
        await hub.calls.handle(ev(CallEventKind.NEW_CALL, "p1", 1, users=("agent", "sup")))
        await hub.calls.handle(ev(CallEventKind.ANSWER, "p1", 5, answered_by="sup"))
        got = []
        while not sub.empty():
            e = sub.get_nowait()
            if e.kind.startswith("call."):
                got.append(e)
    both = frozenset({api.user_ids["agent"], api.user_ids["sup"]})
    assert [(e.kind, e.users) for e in got] == [("call.ringing", both), ("call.answered", both)]
    assert got[1].data["answered_user_id"] == api.user_ids["sup"]
    assert got[0].data["customer_id"] is not None
    assert got[0].data["direction"] == Direction.IN.value
