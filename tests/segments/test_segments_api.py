"""Segments over HTTP: strict filters (422 naming the unknown), counts and previews that
match exactly the customers each filter names, team scoping, CRUD."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import update

from hub.runtime import Hub
from hub.store.tables import customer_t
from tests.support.api import Api

PEOPLE: list[dict[str, Any]] = [
    # 1
    {
        "name": "Anna Berlin",
        "postal_code": "10115",
        "city": "Berlin",
        "country": "DE",
        "industry": "retail",
        "tags": ["vip", "b2b"],
        "custom": {"tier": "gold", "size": 50},
        "emails": ["anna@example.org"],
    },
    # 2
    {
        "name": "Bernd Potsdam",
        "postal_code": "14467",
        "city": "Potsdam",
        "country": "DE",
        "industry": "retail",
        "tags": ["b2b"],
        "custom": {"tier": "silver"},
        "kind": "lead",
    },
    # 3
    {
        "name": "Clara Hamburg",
        "postal_code": "20095",
        "city": "hamburg",
        "country": "DE",
        "industry": "logistics",
        "tags": ["vip"],
    },
    # 4
    {"name": "Dora Wien", "postal_code": "1010", "city": "Wien", "country": "AT", "tags": []},
]


async def _people(api: Api, hub: Hub) -> list[int]:
    ids = []
    for person in PEOPLE:
        status, body = await api.call("POST", "/api/v1/customers", "admin", json=person)
        assert status == 201, body
        ids.append(body["id"])
    return ids


async def _ids(api: Api, flt: dict[str, Any], as_: str = "admin") -> list[int]:
    status, body = await api.call(
        "POST", "/api/v1/segments/preview", as_, json={"filter": flt, "limit": 200}
    )
    assert status == 200, body
    ids = [c["id"] for c in body["items"]]
    assert body["count"] == len(ids)
    return ids


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({}, [1, 2, 3, 4]),
        ({"postal_code": {"prefix": "1"}}, [1, 2, 4]),
        ({"postal_code": {"prefix": ["10", "20"]}}, [1, 3, 4]),
        ({"postal_code": {"from": "10000", "to": "14999"}}, [1, 2]),
        ({"city": "BERLIN"}, [1]),
        ({"city": {"in": ["Hamburg", "wien"]}}, [3, 4]),
        ({"country": "AT"}, [4]),
        ({"industry": "retail"}, [1, 2]),
        ({"tags": {"any": ["vip", "b2b"]}}, [1, 2, 3]),
        ({"tags": {"all": ["vip", "b2b"]}}, [1]),
        ({"tags": {"none": ["vip"]}}, [2, 4]),
        ({"tags": {"any": ["b2b"], "none": ["vip"]}}, [2]),
        ({"kind": "lead"}, [2]),
        ({"custom": {"tier": "gold"}}, [1]),
        ({"custom": {"tier": {"in": ["gold", "silver"]}}}, [1, 2]),
        ({"custom": {"size": 50}}, [1]),
        ({"custom": {"tier": {"exists": False}}}, [3, 4]),
        ({"consent": {"channel": "email", "state": "none"}}, [1, 2, 3, 4]),
    ],
)
async def test_preview_selects_exactly_the_matching_customers(
    api: Api, hub: Hub, flt: dict[str, Any], expected: list[int]
) -> None:
    await _people(api, hub)
    assert await _ids(api, flt) == sorted(expected)


async def test_last_contact_owner_and_consent_filters(api: Api, hub: Hub) -> None:
    ids = await _people(api, hub)
    async with hub.db.write() as s:
        conn = await s.connection()
        await conn.execute(
            update(customer_t)
            .where(customer_t.c.id == ids[0])
            .values(
                last_inbound_at=datetime(2026, 1, 10, tzinfo=UTC), owner_id=api.user_ids["agent"]
            )
        )
        await conn.execute(
            update(customer_t)
            .where(customer_t.c.id == ids[1])
            .values(last_outbound_at=datetime(2026, 6, 1, tzinfo=UTC))
        )
    assert await _ids(api, {"last_inbound": {"after": "2026-01-01T00:00:00Z"}}) == [1]
    assert await _ids(api, {"last_inbound": {"before": "2026-01-01"}}) == []
    assert await _ids(api, {"last_outbound": {"after": "2026-05-31T23:00:00+00:00"}}) == [2]
    assert await _ids(api, {"last_contact": {"after": "2026-01-05", "before": "2026-07-01"}}) == [
        1,
        2,
    ]
    assert await _ids(api, {"owner_id": api.user_ids["agent"]}) == [1]
    assert await _ids(api, {"owner_id": None}) == [2, 3, 4]
    for state, cid in (("opted_in", ids[0]), ("opted_out", ids[1]), ("opted_in", ids[1])):
        status, _ = await api.call(
            "POST",
            f"/api/v1/customers/{cid}/consent",
            json={"channel": "email", "purpose": "newsletter", "state": state, "source": "test"},
        )
        assert status == 201
    optin = {"consent": {"channel": "email", "purpose": "newsletter", "state": "opted_in"}}
    assert await _ids(api, optin) == [1, 2]  # the newest row of customer 2 is in force
    none = {"consent": [{"channel": "email", "purpose": "newsletter", "state": "none"}]}
    assert await _ids(api, none) == [3, 4]


@pytest.mark.parametrize(
    ("flt", "named"),
    [
        ({"zip": "10"}, "unknown field 'zip'"),
        ({"city": "Berlin", "tag": "vip"}, "unknown field 'tag'"),
        ({"tags": {"some": ["vip"]}}, "tags: unknown operator 'some'"),
        ({"postal_code": {"starts": "10"}}, "postal_code: unknown operator 'starts'"),
        ({"city": {"like": "Ber%"}}, "city: unknown operator 'like'"),
        ({"custom": {"tier": {"gt": 5}}}, "custom.tier: unknown operator 'gt'"),
        ({"last_inbound": {"since": "2026-01-01"}}, "last_inbound: unknown operator 'since'"),
        ({"consent": {"channel": "email", "state": "yes"}}, "consent.state: must be one of"),
        ({"kind": "prospect"}, "kind: must be lead or customer"),
        ({"owner_id": "5"}, "owner_id: must be a positive integer id"),
        ({"last_inbound": {"after": "yesterday"}}, "last_inbound.after: must be an ISO 8601"),
        ({"tags": {"any": []}}, "tags.any: must not be empty"),
    ],
)
async def test_unknown_fields_and_operators_are_a_422_naming_them(
    api: Api, flt: dict[str, Any], named: str
) -> None:
    for path, body in (
        ("/api/v1/segments/preview", {"filter": flt}),
        ("/api/v1/segments", {"name": "x", "filter": flt}),
    ):
        status, answer = await api.call("POST", path, "marketing", json=body)
        assert status == 422, (path, answer)
        assert named in answer["detail"]
    status, body = await api.call("GET", "/api/v1/segments")
    assert (status, body) == (200, {"items": []})  # nothing half-stored


async def test_customers_list_refuses_unknown_and_repeated_parameters(api: Api) -> None:
    """The issue's `customers?zip=10` listed everyone: now a 400 naming zip."""
    status, body = await api.call("GET", "/api/v1/customers?zip=10")
    assert status == 400 and "unknown query parameter zip" in body["detail"]
    status, body = await api.call("GET", "/api/v1/customers?city=a&city=b")
    assert (status, body["detail"]) == (400, "query parameter city given more than once")


async def test_saved_segment_crud_count_and_preview(api: Api, hub: Hub) -> None:
    await _people(api, hub)
    flt = {"tags": {"any": ["vip"]}, "country": "DE"}
    status, seg = await api.call(
        "POST", "/api/v1/segments", "admin", json={"name": "VIPs DE", "filter": flt}
    )
    assert status == 201, seg
    assert {k: seg[k] for k in ("id", "name", "filter", "team_id", "created_by")} == {
        "id": 1,
        "name": "VIPs DE",
        "filter": flt,
        "team_id": None,
        "created_by": api.user_ids["admin"],
    }
    assert await api.call("GET", "/api/v1/segments/1/count") == (
        200,
        {"segment_id": 1, "count": 2},
    )
    status, preview = await api.call("GET", "/api/v1/segments/1/preview?limit=1")
    assert status == 200
    assert preview["count"] == 2
    assert [(c["id"], c["name"], c["city"]) for c in preview["items"]] == [
        (1, "Anna Berlin", "Berlin")
    ]
    status, _ = await api.call("POST", "/api/v1/segments", json={"name": "VIPs DE", "filter": {}})
    assert status == 409
    status, changed = await api.call(
        "PATCH", "/api/v1/segments/1", json={"filter": {"tags": {"all": ["vip", "b2b"]}}}
    )
    assert (status, changed["filter"]) == (200, {"tags": {"all": ["vip", "b2b"]}})
    assert (await api.call("GET", "/api/v1/segments/1/count"))[1]["count"] == 1
    status, bad = await api.call("PATCH", "/api/v1/segments/1", json={"filter": {"vip": True}})
    assert status == 422 and "unknown field 'vip'" in bad["detail"]
    assert (await api.call("GET", "/api/v1/segments/1"))[1]["filter"] == {
        "tags": {"all": ["vip", "b2b"]}
    }
    assert (await api.call("DELETE", "/api/v1/segments/1", "agent"))[0] == 403
    assert (await api.call("DELETE", "/api/v1/segments/1"))[0] == 204
    assert (await api.call("GET", "/api/v1/segments/1"))[0] == 404


async def test_team_segments_see_and_select_their_team_only(api: Api, hub: Hub) -> None:
    await _people(api, hub)  # made by admin: the default team, Support
    status, sales = await api.call(
        "POST", "/api/v1/customers", "sales_agent", json={"name": "Sven Sales", "city": "Berlin"}
    )
    assert status == 201
    # marketing is in Support: its segment is Support's and selects Support's customers.
    status, seg = await api.call(
        "POST",
        "/api/v1/segments",
        "marketing",
        json={"name": "Berlin", "filter": {"city": "Berlin"}},
    )
    assert (status, seg["team_id"]) == (201, api.team_ids["Support"])
    assert (await api.call("GET", f"/api/v1/segments/{seg['id']}/count", "admin"))[1]["count"] == 1
    assert await _ids(api, {"city": "Berlin"}, "admin") == [1, sales["id"]]
    assert await _ids(api, {"city": "Berlin"}, "marketing") == [1]
    # Another team's segment is not found; naming a team one is not in is refused.
    assert (await api.call("GET", f"/api/v1/segments/{seg['id']}", "sales_agent"))[0] == 404
    status, _ = await api.call(
        "POST",
        "/api/v1/segments",
        "marketing",
        json={"name": "S", "filter": {}, "team_id": api.team_ids["Sales"]},
    )
    assert status == 403
    status, _ = await api.call(
        "POST", "/api/v1/segments", "agent", json={"name": "A", "filter": {}}
    )
    assert status == 403


async def test_stream_ids_walks_id_ranges_and_resumes(api: Api, hub: Hub) -> None:
    from hub.segments import parse_filter, stream_ids

    await _people(api, hub)
    flt = parse_filter({"country": "DE"})
    async with hub.db.read() as s:
        conn = await s.connection()
        chunks = [ids async for ids in stream_ids(conn, flt, None, span=2)]
        resumed = [ids async for ids in stream_ids(conn, flt, None, after=2, span=2)]
        one_range = [ids async for ids in stream_ids(conn, flt, None)]
    assert chunks == [[1, 2], [3]]  # customer 4 is Austrian; its range yields nothing
    assert resumed == [[3]]
    assert one_range == [[1, 2, 3]]
