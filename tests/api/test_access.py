"""Authentication, roles, team scoping on every endpoint, and every error status."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from channels.base import Channel, InboundContact
from hub.runtime import Hub
from tests.support.api import Api, console_route


@pytest.fixture
async def support_customer(api: Api, hub: Hub) -> dict[str, int]:
    """A Support-team customer with a conversation, an interaction and a task."""
    r = await hub.ingestor.ingest(
        InboundContact(Channel.SMS, "+491715550000", text="hi", provider_id="S1")
    )
    status, task = await api.call(
        "POST", "/api/v1/tasks", "agent", json={"customer_id": r.customer_id, "title": "call"}
    )
    assert status == 201
    assert r.conversation_id is not None
    return {"customer": r.customer_id, "conversation": r.conversation_id, "task": task["id"]}


def every_endpoint(ids: dict[str, int]) -> list[tuple[str, str, Any]]:
    c, conv, task = ids["customer"], ids["conversation"], ids["task"]
    return [
        ("GET", f"/api/v1/customers/{c}", None),
        ("PATCH", f"/api/v1/customers/{c}", {"city": "X"}),
        ("DELETE", f"/api/v1/customers/{c}", None),
        ("GET", f"/api/v1/customers/{c}/timeline", None),
        ("POST", f"/api/v1/customers/{c}/notes", {"text": "x"}),
        ("POST", f"/api/v1/customers/{c}/merge/{c}", None),
        ("GET", f"/api/v1/conversations/{conv}", None),
        ("PATCH", f"/api/v1/conversations/{conv}", {"status": "closed"}),
        ("GET", f"/api/v1/tasks/{task}", None),
        ("PATCH", f"/api/v1/tasks/{task}", {"done": True}),
        ("DELETE", f"/api/v1/tasks/{task}", None),
        ("POST", "/api/v1/tasks", {"customer_id": c, "title": "x"}),
    ]


async def test_other_team_gets_404_on_every_endpoint(
    api: Api, support_customer: dict[str, int]
) -> None:
    for method, path, body in every_endpoint(support_customer):
        # sales_sup may do everything by role, so only the team can stop it.
        status, answer = await api.call(method, path, "sales_sup", json=body)
        assert (status, answer["error"]) == (404, "not_found"), (method, path)
    for path in ("/api/v1/customers", "/api/v1/conversations", "/api/v1/tasks"):
        status, answer = await api.call("GET", path, "sales_sup")
        assert (status, answer["items"]) == (200, []), path
    # The record is untouched and still visible to its own team.
    status, body = await api.call(
        "GET", f"/api/v1/customers/{support_customer['customer']}", "agent"
    )
    assert (status, body["city"]) == (200, "")


async def test_own_team_and_admin_see_the_lists(api: Api, support_customer: dict[str, int]) -> None:
    for user in ("agent", "sup", "marketing", "admin"):
        for path, key in (
            ("/api/v1/customers", "customer"),
            ("/api/v1/conversations", "conversation"),
            ("/api/v1/tasks", "task"),
        ):
            status, body = await api.call("GET", path, user)
            assert status == 200
            assert [i["id"] for i in body["items"]] == [support_customer[key]], (user, path)


async def test_roles_limit_actions_with_403(api: Api, support_customer: dict[str, int]) -> None:
    c = support_customer["customer"]
    forbidden = [
        ("agent", "DELETE", f"/api/v1/customers/{c}", None, "role agent may not delete customers"),
        (
            "agent",
            "POST",
            f"/api/v1/customers/{c}/merge/{c}",
            None,
            "role agent may not merge customers",
        ),
        (
            "marketing",
            "POST",
            f"/api/v1/customers/{c}/notes",
            {"text": "x"},
            "role marketing may not write notes and conversations",
        ),
        (
            "marketing",
            "POST",
            "/api/v1/tasks",
            {"customer_id": c, "title": "x"},
            "role marketing may not write tasks",
        ),
        (
            "agent",
            "POST",
            "/api/v1/customers",
            {"name": "x", "team_id": api.team_ids["Sales"]},
            f"team_id: you are not a member of team {api.team_ids['Sales']}",
        ),
        (
            "agent",
            "PATCH",
            f"/api/v1/customers/{c}",
            {"team_id": api.team_ids["Sales"]},
            f"team_id: you are not a member of team {api.team_ids['Sales']}",
        ),
    ]
    for user, method, path, body, detail in forbidden:
        status, answer = await api.call(method, path, user, json=body)
        assert (status, answer) == (403, {"error": "forbidden", "detail": detail}), (
            user,
            method,
            path,
        )
    status, _ = await api.call("GET", f"/api/v1/customers/{c}", "agent")
    assert status == 200


async def test_authentication_errors_are_401_with_challenge(api: Api) -> None:
    cases = {
        None: "missing bearer token",
        "Basic abc": "Authorization must be 'Bearer <token>'",
        "Bearer crm_not-a-real-token": "invalid, expired or revoked token",
        "Bearer something-else": "invalid, expired or revoked token",
    }
    for header, detail in cases.items():
        headers = {"Authorization": header} if header else {}
        resp = await api.client.get("/api/v1/customers", headers=headers)
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == 'Bearer realm="crmhub"'
        assert await resp.json() == {"error": "unauthorized", "detail": detail}


async def test_login_issues_a_working_token(api: Api) -> None:
    status, body = await api.call(
        "POST", "/api/v1/auth/token", None, json={"username": "agent", "password": "wrong"}
    )
    assert (status, body) == (
        401,
        {"error": "unauthorized", "detail": "wrong username or password"},
    )
    status, body = await api.call(
        "POST", "/api/v1/auth/token", None, json={"username": "agent", "password": "pw-agent"}
    )
    assert status == 201
    assert body["user"] == {
        "id": api.user_ids["agent"],
        "username": "agent",
        "role": "agent",
        "team_ids": [api.team_ids["Support"]],
    }
    resp = await api.client.get(
        "/api/v1/customers", headers={"Authorization": f"Bearer {body['token']}"}
    )
    assert resp.status == 200


async def test_every_error_status_is_json(api: Api, hub: Hub) -> None:
    await api.call("POST", "/api/v1/customers", json={"name": "A", "emails": ["a@example.org"]})
    big = "x" * (hub.settings.server.max_body_bytes + 1)
    cases: list[tuple[str, str, dict[str, Any], int, str]] = [
        ("GET", "/api/v1/customers/abc", {}, 400, "id must be an integer, not 'abc'"),
        ("GET", "/api/v1/customers?limit=0", {}, 400, "limit must be between 1 and 500"),
        ("GET", "/api/v1/customers?cursor=%%%", {}, 400, "cursor is not one this API handed out"),
        (
            "GET",
            "/api/v1/customers?owner_id=x",
            {},
            400,
            "query parameter owner_id must be an integer, not 'x'",
        ),
        (
            "GET",
            "/api/v1/customers?last_contact_after=yesterday",
            {},
            400,
            "query parameter last_contact_after must be an ISO 8601 time, not 'yesterday'",
        ),
        (
            "POST",
            "/api/v1/customers",
            {"data": b"{nope", "headers": {"Content-Type": "application/json"}},
            400,
            "",
        ),
        (
            "POST",
            "/api/v1/customers",
            {"data": b"[1]", "headers": {"Content-Type": "application/json"}},
            400,
            "body must be a JSON object",
        ),
        (
            "GET",
            "/api/v1/customers/99999999999999999999",
            {},
            400,
            "id must be between 1 and 2147483647",
        ),
        (
            "GET",
            "/api/v1/customers?owner_id=3000000000",
            {},
            400,
            "query parameter owner_id must be between 1 and 2147483647",
        ),
        ("GET", "/api/v1/customers?cursor=MWUrMjA", {}, 400, "cursor must be an integer"),
        (
            "GET",
            "/api/v1/customers/1/timeline?cursor=WyIyMDI2LTAxLTAxVDAwOjAwOjAwKzAwOjAwIiwgSW5maW5pdHld",
            {},
            400,
            "cursor must be an integer",
        ),
        ("POST", "/api/v1/tasks", {"json": {"customer_id": 10**20, "title": "x"}}, 422, ""),
        ("GET", "/api/v1/customers/999", {}, 404, "no customer 999"),
        ("GET", "/api/v1/nothing-here", {}, 404, "Not Found"),
        ("PUT", "/api/v1/customers/1", {}, 405, "Method Not Allowed"),
        (
            "POST",
            "/api/v1/customers",
            {"json": {"name": "B", "emails": ["A@example.org"]}},
            409,
            "email a@example.org already belongs to another customer",
        ),
        (
            "POST",
            "/api/v1/customers",
            {"data": big, "headers": {"Content-Type": "application/json"}},
            413,
            "",
        ),
        (
            "POST",
            "/api/v1/customers",
            {"data": b"name=x", "headers": {"Content-Type": "text/plain"}},
            415,
            "expected application/json, got text/plain",
        ),
        (
            "POST",
            "/api/v1/customers",
            {"json": {"emails": ["not-an-address"]}},
            422,
            "not an email address: 'not-an-address'",
        ),
        (
            "PATCH",
            "/api/v1/conversations/1",
            {"json": {"status": "closed"}},
            404,
            "no conversation 1",
        ),
    ]
    for method, path, kw, status, detail in cases:
        got, body = await api.call(method, path, **kw)
        assert got == status, (method, path, body)
        assert isinstance(body, dict) and set(body) == {"error", "detail"}, (path, body)
        if detail:
            assert body["detail"] == detail, (path, body)
    status, body = await api.call(
        "POST", "/api/v1/customers", json={"notes": "a\u0000b", "custom": {"k": "\u0000"}}
    )
    assert (status, body) == (
        422,
        {
            "error": "invalid",
            # Refused before validation, at the first field that holds one.
            "detail": [{"field": "notes", "message": "contains a NUL character"}],
        },
    )
    status, body = await api.call("POST", "/api/v1/customers", json={"name": "x", "colour": "red"})
    assert (status, body) == (
        422,
        {
            "error": "invalid",
            "detail": [{"field": "colour", "message": "Extra inputs are not permitted"}],
        },
    )


async def test_health_ready_and_openapi_need_no_token(api: Api) -> None:
    assert await api.call("GET", "/healthz", None) == (200, {"status": "ok"})
    assert await api.call("GET", "/readyz", None) == (200, {"status": "ready"})
    status, doc = await api.call("GET", "/api/v1/openapi.json", None)
    assert status == 200 and doc["openapi"] == "3.1.0"
    assert set(doc["paths"]["/api/v1/customers/{id}"]) == {"get", "patch", "delete"}
    assert doc["components"]["schemas"]["CustomerIn"]["additionalProperties"] is False
    # Every route the app serves is documented, and nothing undocumented is served
    # (the console's HTML pages are not part of the API).
    served = {
        (r.method.lower(), r.resource.canonical)
        for r in api.client.app.router.routes()
        if r.method != "HEAD" and r.resource is not None and not console_route(r)
    }
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops} | {
        ("get", "/api/v1/openapi.json")
    }
    assert served == documented


async def test_team_creation_raced_by_two_nodes_gives_one_team(hub: Hub) -> None:
    from sqlmodel import select

    from hub.records.teams import ensure_team
    from hub.store.models import Team

    ids = await asyncio.gather(*[ensure_team(hub.db, "Key Accounts") for _ in range(4)])
    assert len(set(ids)) == 1
    async with hub.db.read() as s:
        names = (await s.exec(select(Team.name).where(Team.name == "Key Accounts"))).all()
    assert names == ["Key Accounts"]
