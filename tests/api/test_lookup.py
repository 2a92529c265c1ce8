"""GET /api/v1/lookup: the caller card, for the asking user's teams, in any number form."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from channels.base import Channel, InboundContact
from hub.runtime import Hub
from tests.support.api import Api

pytestmark = pytest.mark.db


async def alice(api: Api, hub: Hub) -> int:
    """A Support customer with SMS, email and a note in her history, and two tasks."""
    status, body = await api.call(
        "POST",
        "/api/v1/customers",
        "agent",
        json={
            "name": "Alice Example",
            "company": "Example GmbH",
            "emails": ["alice@example.org"],
            "phones": ["030 1234567"],
            "tags": ["vip", "b2b"],
            "owner_id": api.user_ids["agent"],
        },
    )
    assert status == 201, body
    cid: int = body["id"]
    for i in range(4):
        await hub.ingestor.ingest(
            InboundContact(
                Channel.SMS,
                "+49301234567",
                text=f"sms{i}",
                provider_id=f"L{i}",
                occurred_at=datetime(2026, 7, 1, i, tzinfo=UTC),
            )
        )
    await hub.ingestor.ingest(
        InboundContact(
            Channel.EMAIL,
            "alice@example.org",
            subject="Order",
            text="mail",
            provider_id="<m1@example.org>",
            occurred_at=datetime(2026, 7, 1, 5, tzinfo=UTC),
        )
    )
    for title in ("call back", "send offer"):
        status, _ = await api.call(
            "POST", "/api/v1/tasks", "agent", json={"customer_id": cid, "title": title}
        )
        assert status == 201
    status, tasks = await api.call("GET", f"/api/v1/tasks?customer_id={cid}", "agent")
    done = next(t["id"] for t in tasks["items"] if t["title"] == "send offer")
    status, _ = await api.call("PATCH", f"/api/v1/tasks/{done}", "agent", json={"done": True})
    assert status == 200
    return cid


async def test_the_card_of_a_known_caller(api: Api, hub: Hub) -> None:
    cid = await alice(api, hub)
    # Unencoded "+" as PBX scripts send it: it arrives as a space.
    status, card = await api.call("GET", "/api/v1/lookup?phone=+49301234567", "agent")
    assert status == 200, card
    assert {k: card[k] for k in ("status", "phone", "international", "country")} == {
        "status": "known",
        "phone": "+49301234567",
        "international": "+49 30 1234567",
        "country": "DE",
    }
    assert card["customer"] == {
        "id": cid,
        "name": "Alice Example",
        "company": "Example GmbH",
        "kind": "customer",
        "tags": ["b2b", "vip"],
        "owner": {"id": api.user_ids["agent"], "username": "agent", "display_name": "agent"},
        "team_id": api.team_ids["Support"],
    }
    assert card["team"] == {"id": api.team_ids["Support"], "name": "Support"}
    # Across channels, newest first, five of them.
    assert [(i["channel"], i["text"]) for i in card["recent_interactions"]] == [
        ("email", "mail"),
        ("sms", "sms3"),
        ("sms", "sms2"),
        ("sms", "sms1"),
        ("sms", "sms0"),
    ]
    assert sorted(c["channel"] for c in card["open_conversations"]) == ["email", "sms"]
    assert [t["title"] for t in card["open_tasks"]] == ["call back"]
    # The same card by address, and for an admin.
    status, by_mail = await api.call("GET", "/api/v1/lookup?email=ALICE@example.org", "admin")
    assert (status, by_mail["customer"]["id"], by_mail["email"]) == (
        200,
        cid,
        "alice@example.org",
    )


async def test_another_teams_customer_shows_the_team_and_name_only(api: Api, hub: Hub) -> None:
    await alice(api, hub)
    status, card = await api.call("GET", "/api/v1/lookup?phone=%2B49301234567", "sales_agent")
    assert (status, card) == (
        200,
        {
            "status": "other_team",
            "phone": "+49301234567",
            "international": "+49 30 1234567",
            "country": "DE",
            "customer": {"name": "Alice Example"},
            "team": {"id": api.team_ids["Support"], "name": "Support"},
            "open_conversations": [],
            "recent_interactions": [],
            "open_tasks": [],
        },
    )


async def test_an_unknown_caller_gets_the_number_and_its_country(api: Api) -> None:
    status, card = await api.call("GET", "/api/v1/lookup?phone=0044 20 7946 0018", "agent")
    assert (status, card) == (
        200,
        {
            "status": "unknown",
            "phone": "+442079460018",
            "international": "+44 20 7946 0018",
            "country": "GB",
            "customer": None,
            "team": None,
            "open_conversations": [],
            "recent_interactions": [],
            "open_tasks": [],
        },
    )
    status, body = await api.call("GET", "/api/v1/lookup?phone=abc", "agent")
    assert (status, body["error"]) == (422, "invalid")
