"""Customers over HTTP: create, read, update, delete, filters, paging, timeline, lookup."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from channels.base import Channel, InboundContact
from hub.runtime import Hub
from hub.store.models import AuditEvent, Conversation, Customer, Identity, Interaction, Task
from tests.support.api import Api

ALICE = {
    "name": "Alice Example",
    "company": "Example GmbH",
    "industry": "retail",
    "postal_code": "10115",
    "city": "Berlin",
    "country": "DE",
    "emails": ["Alice <ALICE@Example.ORG>", "a.example@example.com"],
    "phones": ["030 1234567"],
    "tags": ["vip", "b2b"],
    "custom": {"customer_number": "K1"},
}


async def create(api: Api, as_: str = "admin", **fields: Any) -> dict[str, Any]:
    status, body = await api.call("POST", "/api/v1/customers", as_, json=fields)
    assert status == 201, body
    return body  # type: ignore[no-any-return]


NO_BOUNCES = {"undeliverable_at": None, "undeliverable_reason": None, "soft_bounces": 0}


async def test_create_returns_the_stored_record(api: Api) -> None:
    status, body = await api.call("POST", "/api/v1/customers", "agent", json=ALICE)
    assert status == 201
    assert {k: body[k] for k in ("name", "company", "postal_code", "tags", "custom", "kind")} == {
        "name": "Alice Example",
        "company": "Example GmbH",
        "postal_code": "10115",
        "tags": ["b2b", "vip"],
        "custom": {"customer_number": "K1"},
        "kind": "customer",
    }
    assert body["team_id"] == api.team_ids["Support"]  # the agent's team
    assert body["emails"] == [
        {
            "value": "alice@example.org",
            "raw": "Alice <ALICE@Example.ORG>",
            "primary": True,
            "verified": True,
            **NO_BOUNCES,
        },
        {
            "value": "a.example@example.com",
            "raw": "a.example@example.com",
            "primary": False,
            "verified": True,
            **NO_BOUNCES,
        },
    ]
    assert body["phones"] == [
        {
            "value": "+49301234567",
            "raw": "030 1234567",
            "primary": True,
            "verified": True,
            **NO_BOUNCES,
        }
    ]
    status, again = await api.call("GET", f"/api/v1/customers/{body['id']}", "agent")
    assert (status, again) == (200, body)


async def test_patch_changes_only_sent_fields_and_replaces_sets(api: Api) -> None:
    c = await create(api, **ALICE)
    status, body = await api.call(
        "PATCH",
        f"/api/v1/customers/{c['id']}",
        json={"city": "Hamburg", "phones": ["+49 40 123456"], "tags": []},
    )
    assert status == 200
    assert (body["city"], body["name"], body["tags"]) == ("Hamburg", "Alice Example", [])
    assert [p["value"] for p in body["phones"]] == ["+4940123456"]
    assert [e["value"] for e in body["emails"]] == ["alice@example.org", "a.example@example.com"]


async def test_delete_erases_customer_and_history(api: Api, hub: Hub) -> None:
    r = await hub.ingestor.ingest(
        InboundContact(Channel.SMS, "+491711111111", text="hi", provider_id="S1")
    )
    keep = await hub.ingestor.ingest(
        InboundContact(Channel.SMS, "+491712121212", text="stays", provider_id="S2")
    )
    await api.call("POST", "/api/v1/tasks", json={"customer_id": r.customer_id, "title": "t"})
    await api.call("POST", f"/api/v1/customers/{r.customer_id}/notes", json={"text": "n"})
    status, _ = await api.call("DELETE", f"/api/v1/customers/{r.customer_id}", "sup")
    assert status == 204
    status, body = await api.call("GET", f"/api/v1/customers/{r.customer_id}", "admin")
    assert (status, body["error"]) == (404, "not_found")
    status, body = await api.call("GET", "/api/v1/lookup?phone=%2B491711111111")
    assert (status, body["status"], body["customer"]) == (200, "unknown", None)
    async with hub.db.read() as s:
        for model in (Customer, Identity, Conversation, Interaction, Task):
            left = (
                await s.exec(select(model.customer_id if model is not Customer else model.id))
            ).all()  # type: ignore[attr-defined,call-overload]
            expected = set() if model is Task else {keep.customer_id}
            assert {row[0] for row in left} == expected, model.__name__
        audit = (await s.exec(select(AuditEvent.action, AuditEvent.entity_id))).all()  # type: ignore[call-overload]
    assert ("delete", r.customer_id) in [tuple(a) for a in audit]


async def test_list_filters(api: Api) -> None:
    a = await create(api, **ALICE)
    b = await create(
        api,
        name="Bob",
        company="Bau AG",
        postal_code="20095",
        city="Hamburg",
        industry="construction",
        tags=["b2b"],
        kind="lead",
        country="DE",
        team_id=api.team_ids["Sales"],
        owner_id=api.user_ids["sales_agent"],
    )
    c = await create(api, name="Carla Öztürk", postal_code="10247", city="Berlin", country="AT")
    cases = {
        "q=exam": [a],
        "q=BAU": [b],
        "postal_code=10": [a, c],
        "postal_code=101": [a],
        "city=Berlin": [a, c],
        "country=AT": [c],
        "industry=construction": [b],
        "tag=b2b": [a, b],
        "tag=vip": [a],
        "tag=b2b&tag=vip": [a],  # every tag given, never just the first
        "tag=vip&tag=b2b": [a],
        "tag=b2b&tag=nobody-has-this": [],
        f"owner_id={api.user_ids['sales_agent']}": [b],
        f"team_id={api.team_ids['Sales']}": [b],
        "kind=lead": [b],
        "kind=customer": [a, c],
        "q=%25": [],  # LIKE wildcards are literal
        "q=%C3%96zt": [c],  # "Özt": non-ASCII case folding on both backends
        "q=%C3%B6ZT%C3%BCRK": [c],  # "öZTüRK"
    }
    for query, expected in cases.items():
        status, body = await api.call("GET", f"/api/v1/customers?{query}")
        assert status == 200, query
        assert [i["id"] for i in body["items"]] == [e["id"] for e in expected], query


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        (
            "zip=10",
            "unknown query parameter zip (this route takes: city, country, cursor, industry, "
            "kind, last_contact_after, last_contact_before, limit, owner_id, postal_code, q, "
            "tag, team_id)",
        ),
        ("city=Berlin&city=Hamburg", "query parameter city given more than once"),
        ("limit=5&limit=6", "query parameter limit given more than once"),
    ],
)
async def test_an_unknown_or_repeated_filter_is_a_400_not_everyone(
    api: Api, query: str, detail: str
) -> None:
    await create(api, **ALICE)
    status, body = await api.call("GET", f"/api/v1/customers?{query}")
    assert (status, body) == (400, {"error": "bad_request", "detail": detail})


async def test_every_api_route_refuses_a_parameter_it_does_not_take(api: Api) -> None:
    for path in ("/api/v1/conversations", "/api/v1/tasks", "/api/v1/lookup", "/healthz"):
        status, body = await api.call("GET", f"{path}?typo=1")
        assert status == 400, path
        assert body["detail"].startswith("unknown query parameter typo "), path


async def test_last_contact_filters(api: Api, hub: Hub) -> None:
    old = await hub.ingestor.ingest(
        InboundContact(
            Channel.SMS,
            "+491712222222",
            provider_id="S1",
            occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        )
    )
    new = await hub.ingestor.ingest(
        InboundContact(
            Channel.SMS,
            "+491713333333",
            provider_id="S2",
            occurred_at=datetime(2026, 6, 1, tzinfo=UTC),
        )
    )
    await create(api, name="never contacted")
    _, body = await api.call("GET", "/api/v1/customers?last_contact_before=2026-03-01T00:00:00Z")
    assert [i["id"] for i in body["items"]] == [old.customer_id]
    _, body = await api.call(
        "GET", "/api/v1/customers?last_contact_after=2026-03-01T00:00:00%2B00:00"
    )
    assert [i["id"] for i in body["items"]] == [new.customer_id]


async def test_cursor_paging_visits_every_customer_once(api: Api) -> None:
    ids = [(await create(api, name=f"C{i}"))["id"] for i in range(5)]
    seen, cursor, pages = [], None, 0
    while True:
        path = "/api/v1/customers?limit=2" + (f"&cursor={cursor}" if cursor else "")
        status, body = await api.call("GET", path)
        assert status == 200
        seen += [i["id"] for i in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert (seen, pages) == (ids, 3)


async def test_timeline_newest_first_with_notes_and_paging(api: Api, hub: Hub) -> None:
    t = [datetime(2026, 5, d, tzinfo=UTC) for d in (1, 2, 3)]
    r = await hub.ingestor.ingest(
        InboundContact(Channel.SMS, "+491714444444", text="one", provider_id="a", occurred_at=t[0])
    )
    await hub.ingestor.ingest(
        InboundContact(
            Channel.EMAIL, "x@example.org", text="mail", provider_id="b", occurred_at=t[1]
        )
    )
    await hub.ingestor.ingest(
        InboundContact(Channel.SMS, "+491714444444", text="two", provider_id="c", occurred_at=t[2])
    )
    status, note = await api.call(
        "POST", f"/api/v1/customers/{r.customer_id}/notes", "agent", json={"text": "called back"}
    )
    assert status == 201
    assert (note["channel"], note["direction"], note["author_id"]) == (
        "note",
        "out",
        api.user_ids["agent"],
    )
    status, page1 = await api.call(
        "GET", f"/api/v1/customers/{r.customer_id}/timeline?limit=2", "agent"
    )
    assert status == 200
    assert [i["text"] for i in page1["items"]] == ["called back", "two"]
    _, page2 = await api.call(
        "GET",
        f"/api/v1/customers/{r.customer_id}/timeline?limit=2&cursor={page1['next_cursor']}",
        "agent",
    )
    assert ([i["text"] for i in page2["items"]], page2["next_cursor"]) == (["one"], None)


async def test_lookup_by_any_phone_form_and_email(api: Api, hub: Hub) -> None:
    c = await create(api, **ALICE)
    for i in range(7):
        await hub.ingestor.ingest(
            InboundContact(
                Channel.SMS,
                "+49301234567",
                text=f"m{i}",
                provider_id=f"L{i}",
                occurred_at=datetime(2026, 7, 1, i, tzinfo=UTC),
            )
        )
    for query in (
        "phone=030%201234567",
        "phone=%2B49%2030%201234567",
        "phone=0049%20(0)30-1234567",
        "email=alice@EXAMPLE.org",
    ):
        status, body = await api.call("GET", f"/api/v1/lookup?{query}", "agent")
        assert status == 200, query
        assert body["customer"]["id"] == c["id"]
        assert [i["text"] for i in body["recent_interactions"]] == ["m6", "m5", "m4", "m3", "m2"]
    status, body = await api.call("GET", "/api/v1/lookup?phone=0301111111")
    assert (status, body["status"], body["phone"], body["international"], body["country"]) == (
        200,
        "unknown",
        "+49301111111",
        "+49 30 1111111",
        "DE",
    )
    status, body = await api.call("GET", "/api/v1/lookup")
    assert (status, body) == (
        400,
        {"error": "bad_request", "detail": "give exactly one of phone or email"},
    )
    status, body = await api.call("GET", "/api/v1/lookup?email=nope")
    assert (status, body["error"]) == (422, "invalid")


async def test_identity_conflict_is_409_and_nothing_is_stored(api: Api) -> None:
    await create(api, **ALICE)
    status, body = await api.call(
        "POST", "/api/v1/customers", json={"name": "Eve", "emails": ["alice@example.org"]}
    )
    assert (status, body) == (
        409,
        {
            "error": "conflict",
            "detail": "email alice@example.org already belongs to another customer",
        },
    )
    _, listing = await api.call("GET", "/api/v1/customers?q=Eve")
    assert listing["items"] == []


async def test_concurrent_creates_with_one_email_give_one_201_and_409s(api: Api) -> None:
    body = {"name": "Racer", "emails": ["race@example.org"]}
    answers = await asyncio.gather(
        *[api.call("POST", "/api/v1/customers", json=body) for _ in range(5)]
    )
    assert sorted(status for status, _ in answers) == [201, 409, 409, 409, 409]
    _, listing = await api.call("GET", "/api/v1/customers?q=Racer")
    assert len(listing["items"]) == 1


async def test_a_deleted_customers_id_is_never_given_again(api: Api) -> None:
    first = await create(api, name="First")
    gone = await create(api, name="Gone")
    assert (await api.call("DELETE", f"/api/v1/customers/{gone['id']}", "sup"))[0] == 204
    new = await create(api, name="New")
    assert new["id"] > gone["id"] > first["id"]
