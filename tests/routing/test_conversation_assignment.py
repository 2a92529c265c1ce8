"""Who gets a new email or SMS conversation: the online owner, else round robin among the
online agents of the customer's team, skipping agents at their maximum; the conversation
keeps its assignee, and `conversation.assigned` says who got it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import select, update

from channels.base import Channel, InboundContact
from hub.events.bus import Event, Subscription
from hub.events.kinds import EventKind
from hub.events.presence import Status
from hub.records.auth import create_user
from hub.runtime import Hub
from hub.store.db import Database
from hub.store.models import Role
from hub.store.tables import conversation_t, customer_t
from tests.support.hubs import make_settings


@asynccontextmanager
async def _hub(db_url: str, **assignment: Any) -> AsyncIterator[tuple[Hub, dict[str, int]]]:
    hub = Hub(make_settings(db_url, routing={"assignment": assignment}), dispatch=False)
    await hub.start()
    try:
        users = {}
        for name, team in (
            ("a1", "Support"),
            ("a2", "Support"),
            ("a3", "Support"),
            ("s1", "Sales"),
        ):
            users[name] = (
                await create_user(hub.db, name, role=Role.AGENT, teams=[team], password_cost=12)
            ).id
        yield hub, users
    finally:
        await hub.stop()


def _online(hub: Hub, users: dict[str, int], *names: str) -> None:
    for name in names:
        hub.presence.connected(users[name])


async def _sms(hub: Hub, sender: str, pid: str, channel: Channel = Channel.SMS) -> Any:
    return await hub.ingestor.ingest(InboundContact(channel, sender, provider_id=pid))


async def _assignee(db: Database, conversation_id: int) -> int | None:
    async with db.read() as s:
        conn = await s.connection()
        row = (
            await conn.execute(
                select(conversation_t.c.assignee_id).where(conversation_t.c.id == conversation_id)
            )
        ).one()
    return row[0]


def _assigned(sub: Subscription) -> list[dict[str, Any]]:
    events: list[Event] = []
    while not sub.empty():
        events.append(sub.get_nowait())
    return [e.data for e in events if e.kind == EventKind.CONVERSATION_ASSIGNED]


async def _set_owner_and_close(db: Database, customer_id: int, owner: int | None) -> None:
    async with db.write() as s:
        conn = await s.connection()
        await conn.execute(
            update(customer_t).where(customer_t.c.id == customer_id).values(owner_id=owner)
        )
        await conn.execute(
            update(conversation_t)
            .where(conversation_t.c.customer_id == customer_id)
            .values(status="closed")
        )


async def test_round_robin_over_online_agents_then_the_online_owner(
    db: Database, db_url: str
) -> None:
    async with _hub(db_url) as (hub, users):
        _online(hub, users, "a1", "a2", "s1")  # a3 is offline; s1 is in another team
        async with hub.bus.subscribe() as sub:
            first = await _sms(hub, "+4917100000001", "SMa1")
            second = await _sms(hub, "+4917100000002", "SMa2")
            third = await _sms(hub, "+4917100000003", "SMa3", Channel.EMAIL)
            assigned = [await _assignee(hub.db, r.conversation_id) for r in (first, second, third)]
            assert assigned == [users["a1"], users["a2"], users["a1"]]
            assert _assigned(sub) == [
                {"conversation_id": r.conversation_id, "customer_id": r.customer_id,
                 "assignee_id": a}
                for r, a in zip((first, second, third), assigned, strict=True)
            ]  # fmt: skip

            # The owner, online, gets the customer's next new conversation.
            await _set_owner_and_close(hub.db, first.customer_id, users["a2"])
            again = await _sms(hub, "+4917100000001", "SMa4")
            assert again.conversation_id != first.conversation_id
            assert await _assignee(hub.db, again.conversation_id) == users["a2"]
            # An offline owner: round robin goes on after its last pick (a1 -> a2).
            await _set_owner_and_close(hub.db, second.customer_id, users["a3"])
            offline = await _sms(hub, "+4917100000002", "SMa5")
            assert await _assignee(hub.db, offline.conversation_id) == users["a2"]
            _assigned(sub)

            # A reply joins the conversation, which keeps its assignee (a1 went away).
            hub.presence.disconnected(users["a1"])
            reply = await _sms(hub, "+4917100000003", "SMa6", Channel.EMAIL)
            assert reply.conversation_id == third.conversation_id
            assert await _assignee(hub.db, third.conversation_id) == users["a1"]
            assert _assigned(sub) == []


async def test_agents_at_their_maximum_are_skipped_and_nobody_online_leaves_the_owner(
    db: Database, db_url: str
) -> None:
    async with _hub(db_url, max_open_conversations=1) as (hub, users):
        _online(hub, users, "a1", "a2")
        one = await _sms(hub, "+4917100000011", "SMm1")
        two = await _sms(hub, "+4917100000012", "SMm2")
        assert [await _assignee(hub.db, r.conversation_id) for r in (one, two)] == [
            users["a1"],
            users["a2"],
        ]
        # Both at their maximum of one open conversation: the owner (none) keeps it.
        full = await _sms(hub, "+4917100000013", "SMm3")
        assert await _assignee(hub.db, full.conversation_id) is None
        # a1's conversation closes: a1 has room again.
        await _set_owner_and_close(hub.db, one.customer_id, None)
        room = await _sms(hub, "+4917100000014", "SMm4")
        assert await _assignee(hub.db, room.conversation_id) == users["a1"]
        # Nobody online: the owner, online or not.
        for name in ("a1", "a2"):
            hub.presence.disconnected(users[name])
        await _set_owner_and_close(hub.db, two.customer_id, users["a3"])
        async with hub.bus.subscribe() as sub:
            owned = await _sms(hub, "+4917100000012", "SMm5")
            assert await _assignee(hub.db, owned.conversation_id) == users["a3"]
            assert [a["assignee_id"] for a in _assigned(sub)] == [users["a3"]]


async def test_away_agents_are_not_online(db: Database, db_url: str) -> None:
    async with _hub(db_url) as (hub, users):
        _online(hub, users, "a1", "a2")
        hub.presence.set_status(users["a1"], Status.AWAY)
        away = await _sms(hub, "+4917100000021", "SMo1")
        assert await _assignee(hub.db, away.conversation_id) == users["a2"]


async def test_assignment_off_keeps_the_owner(db: Database, db_url: str) -> None:
    async with _hub(db_url, enabled=False) as (hub, users):
        _online(hub, users, "a1", "a2")
        off = await _sms(hub, "+4917100000022", "SMo2")
        assert await _assignee(hub.db, off.conversation_id) is None
