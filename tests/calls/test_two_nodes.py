"""The same call's events arriving at two nodes at once (one database): both are answered
200-style (no error), and the call has one state row and one history entry.

Before the call log retried, the node that lost the race on the call's unique keys
answered 400 (an IntegrityError from the other node's insert)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select

from channels.base import CallEvent, CallEventKind, CallProvider, Direction
from hub.calls.service import CallLog
from hub.runtime import Hub
from hub.store.db import Database
from hub.store.models import Interaction, PhoneCall
from tests.calls.support import CALLER, SALES_LINE, VOICE
from tests.support.hubs import make_settings
from tests.support.sms import rows

pytestmark = pytest.mark.db


@pytest.fixture
async def nodes(db_url: str, db: Database) -> AsyncIterator[tuple[Hub, Hub]]:
    hubs = (Hub(make_settings(db_url, voice=VOICE)), Hub(make_settings(db_url, voice=VOICE)))
    for hub in hubs:
        await hub.start()
    try:
        yield hubs
    finally:
        for hub in hubs:
            await hub.stop()


def _call(call_id: str, kind: CallEventKind, **extra: object) -> CallEvent:
    return CallEvent(
        provider=CallProvider.PBX,
        call_id=call_id,
        kind=kind,
        from_number=CALLER,
        to_number=SALES_LINE,
        direction=Direction.IN,
        **extra,  # type: ignore[arg-type]
    )


async def test_first_event_of_a_call_at_two_nodes_at_once_is_stored_once(
    nodes: tuple[Hub, Hub], db: Database
) -> None:
    a, b = nodes
    calls = [f"race-{n}" for n in range(20)]
    # Each call's newCall reaches both nodes at the same moment (a PBX retrying on a
    # timeout through a load balancer); the second half gets newCall and answer at once.
    results = await asyncio.gather(
        *[
            CallLog(node).handle(
                _call(c, CallEventKind.NEW_CALL, users=("alice",))
                if node is a or n < 10
                else _call(c, CallEventKind.ANSWER, answered_by="alice")
            )
            for n, c in enumerate(calls)
            for node in (a, b)
        ],
        return_exceptions=True,
    )
    assert [r for r in results if isinstance(r, BaseException)] == []
    states = await rows(db, select(PhoneCall.call_id, PhoneCall.state).order_by(PhoneCall.call_id))
    assert sorted(states) == sorted(
        (c, "ringing" if n < 10 else "answered") for n, c in enumerate(calls)
    )
    # One history entry per call, all on the one caller.
    assert await rows(db, select(func.count()).select_from(Interaction)) == [(20,)]
