"""PostgreSQL's combined call statements (hub/calls/pg.py) answer what the portable ones do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from hub.calls.pg import pop_cards_pg, read_calls, write_calls, write_calls_and_cards
from hub.calls.users import map_users, phone_keys, resolve_users
from hub.records.auth import create_user
from hub.records.lookup import asked_number, pop_cards
from hub.store.db import Database
from hub.store.models import (
    Conversation,
    CustomerTag,
    Interaction,
    PhoneCall,
    Role,
    Task,
    Team,
    User,
)
from tests.support.imports import add_customer

pytestmark = pytest.mark.db

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _postgres_only(db: Database) -> None:
    if db.sqlite:
        pytest.skip("PostgreSQL statements")


async def test_pop_cards_in_one_statement_are_the_portable_ones(db: Database) -> None:
    """Ties in every order, more rows than a card shows, NULL due dates, closed and done
    rows, a customer without team or owner, one asked twice and one that is not there."""
    anna = await create_user(db, "anna", role=Role.AGENT, teams=["Sales"], password_cost=4)
    async with db.write() as s:
        team = (await s.exec(select(Team).where(Team.name == "Sales"))).one()
        (await s.get(User, anna.id)).display_name = "Anna A."  # type: ignore[union-attr]
    alice = await add_customer(
        db, ("phone", "+49301234567"), kind="customer", name="Alice", company="ACME",
        owner_id=anna.id, team_id=team.id,
    )  # fmt: skip
    bare = await add_customer(db, ("phone", "+49301234568"), name="Bare")
    async with db.write() as s:
        s.add_all([CustomerTag(customer_id=alice, tag=t) for t in ("vip", "b2b", "a")])
        convs = [
            Conversation(
                customer_id=alice,
                channel=ch,
                subject=f"c{i}",
                status=st,
                assignee_id=anna.id if i % 2 else None,
                last_activity_at=T0 + timedelta(hours=i % 3),
            )
            for i, (ch, st) in enumerate(
                [("phone", "open"), ("sms", "pending"), ("email", "closed")] * 9
            )
        ]
        s.add_all(convs)
        await s.flush()
        s.add_all(
            [
                Interaction(
                    customer_id=alice,
                    conversation_id=convs[i % 4].id if i % 3 else None,
                    channel="sms",
                    direction="in" if i % 2 else "out",
                    occurred_at=T0 + timedelta(minutes=i // 3),
                    subject=f"s{i}",
                    text=f"t{i}",
                    sender="+49301234567",
                    recipient="+49305550100",
                    delivery_status="delivered" if i % 4 == 0 else None,
                )
                for i in range(9)
            ]
        )
        s.add_all(
            [
                Task(
                    customer_id=alice,
                    title=f"k{i}",
                    done=i % 5 == 4,
                    due_at=None if i % 3 == 0 else T0 + timedelta(days=i % 2),
                    assignee_id=anna.id if i % 2 else None,
                )
                for i in range(25)
            ]
        )
    asked = asked_number("+49301234567", "DE")
    wanted = [(alice, asked), (bare, {}), (alice, {"phone": "030 1234567"}), (999_999, asked)]
    async with db.read() as s:
        conn = await s.connection()
        portable = await pop_cards(conn, wanted)
        combined = await pop_cards_pg(conn, wanted)
    assert sorted(combined) == [(0, alice), (1, bare), (2, alice)]
    assert combined == portable
    known = combined[(0, alice)].known
    assert known["customer"]["tags"] == ["a", "b2b", "vip"]
    assert len(known["open_conversations"]) == 18
    assert len(known["recent_interactions"]) == 5
    assert len(known["open_tasks"]) == 20
    assert combined[(1, bare)].known["team"] is None


async def test_users_read_with_the_calls_map_as_map_users_does(db: Database) -> None:
    """Priority PBX id > username > extension > phone (lowest id first), inactive users
    never, phone numbers in any spelling; the candidates may hold more users than asked."""
    a = await create_user(db, "w1", role=Role.AGENT, teams=[], password_cost=4)
    b = await create_user(db, "w2", role=Role.AGENT, teams=[], password_cost=4)
    c = await create_user(db, "w3", role=Role.AGENT, teams=[], password_cost=4)
    d = await create_user(db, "w4", role=Role.AGENT, teams=[], password_cost=4)
    async with db.write() as s:
        for uid, pbx, ext, phone, active in (
            (a.id, "w2", "11", "+491711111111", True),
            (b.id, None, "w1", "+491711111111", True),
            (c.id, None, "12", "+491712222222", True),
            (d.id, "x9", "13", "+491713333333", False),
        ):
            user = await s.get(User, uid)
            assert user is not None
            user.pbx_id, user.phone_extension, user.phone, user.active = pbx, ext, phone, active
    asked = {"w1", "w2", "11", "12", "13", "x9", "0171 1111111", "49171 2222222", "+491713333333"}
    numbers = phone_keys(asked, "DE")
    async with db.read() as s:
        conn = await s.connection()
        rows, users = await read_calls(
            conn, [], sorted(asked), sorted(n for n in numbers.values() if n.startswith("+"))
        )
        assert rows == {}
        for names in (asked, {"w1", "0171 1111111"}, {"13", "x9"}, {"49171 2222222"}):
            expected = await map_users(conn, names, "DE")
            assert resolve_users(set(names), numbers, users) == expected
    assert resolve_users(asked, numbers, users) == {
        "w2": a.id, "w1": a.id, "11": a.id, "12": c.id,
        "0171 1111111": a.id,  # "49171 …" without a "+" is no number in DE
    }  # fmt: skip


async def test_calls_written_and_read_back_in_one_statement_each(db: Database) -> None:
    """Inserts, updates and history summaries of one group in one statement; the rows read
    back as advance.py needs them (ringing as a list, times with their zone)."""
    alice = await add_customer(db, ("phone", "+49301234567"), name="Alice")
    async with db.write() as s:
        entry = Interaction(customer_id=alice, channel="phone", direction="in", meta={"a": 1})
        s.add(entry)
        s.add(
            PhoneCall(
                provider="pbx",
                call_id="old",
                direction="in",
                state="ringing",
                ringing=["w1"],
                started_at=T0,
            )
        )
    async with db.write() as s:
        conn = await s.connection()
        await write_calls(
            conn,
            [
                {
                    "provider": "pbx", "call_id": "new", "direction": "out",
                    "from_number": "+49301234567", "to_number": "+49305550100",
                    "started_at": T0.replace(tzinfo=None), "customer_id": alice,
                    "interaction_id": entry.id, "route_team_id": None, "state": "ringing",
                    "ringing": ["w1", "w2"], "answered_by": None, "answered_at": None,
                    "ended_at": None, "cause": None,
                }
            ],
            [
                {
                    "k_provider": "pbx", "k_call_id": "old", "state": "answered",
                    "ringing": ["w1"], "answered_by": "w1",
                    "answered_at": T0 + timedelta(seconds=5), "ended_at": None, "cause": None,
                }
            ],
            [{"k_id": entry.id, "direction": "out", "meta": {"call": {"state": "ringing"}}}],
        )  # fmt: skip
    async with db.read() as s:
        conn = await s.connection()
        rows, users = await read_calls(conn, [("pbx", "new"), ("pbx", "old"), ("x", "new")], [], [])
        stored = await s.get(Interaction, entry.id)
    assert users == []
    assert sorted(rows) == [("pbx", "new"), ("pbx", "old")]
    new, old = rows[("pbx", "new")], rows[("pbx", "old")]
    assert (new.direction, new.state, new.ringing, new.started_at) == (
        "out", "ringing", ["w1", "w2"], T0,
    )  # fmt: skip
    assert (old.state, old.ringing, old.answered_by, old.answered_at) == (
        "answered", ["w1"], "w1", T0 + timedelta(seconds=5),
    )  # fmt: skip
    assert stored is not None
    assert (stored.direction, stored.meta) == ("out", {"call": {"state": "ringing"}})


async def test_writes_and_cards_in_one_statement_give_the_cards_read_after(db: Database) -> None:
    """The cards read in the statement that writes are those a read after the writes
    gives, the direction the summary sets on the call's own entry included."""
    alice = await add_customer(db, ("phone", "+49301234567"), name="Alice")
    async with db.write() as s:
        entries = [
            Interaction(
                customer_id=alice,
                channel="phone",
                direction="in",
                occurred_at=T0 + timedelta(minutes=i),
            )
            for i in range(2)
        ]
        s.add_all(entries)
    own = entries[1].id
    asked = asked_number("+49301234567", "DE")
    async with db.write() as s:
        conn = await s.connection()
        cards = await write_calls_and_cards(
            conn,
            [
                {
                    "provider": "pbx", "call_id": "out1", "direction": "out",
                    "from_number": "+49305550100", "to_number": "+49301234567",
                    "started_at": T0, "customer_id": alice, "interaction_id": own,
                    "route_team_id": None, "state": "ringing", "ringing": ["w1"],
                    "answered_by": None, "answered_at": None, "ended_at": None, "cause": None,
                }
            ],
            [],
            [{"k_id": own, "direction": "out", "meta": {"call": {"state": "ringing"}}}],
            [(alice, asked)],
        )  # fmt: skip
        after = await pop_cards(conn, [(alice, asked)])
    assert cards == after
    recent = cards[(0, alice)].known["recent_interactions"]
    assert [(i["id"], i["direction"]) for i in recent] == [(own, "out"), (entries[0].id, "in")]
    async with db.read() as s:
        rows, _ = await read_calls(await s.connection(), [("pbx", "out1")], [], [])
    assert rows[("pbx", "out1")].direction == "out"
