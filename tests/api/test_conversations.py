"""Conversations and tasks over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime

from channels.base import Channel, InboundContact
from hub.runtime import Hub
from tests.support.api import Api


async def test_conversation_list_get_and_patch(api: Api, hub: Hub) -> None:
    t = datetime(2026, 9, 1, tzinfo=UTC)
    a1 = await hub.ingestor.ingest(
        InboundContact(Channel.SMS, "+491717777777", text="one", provider_id="S1", occurred_at=t)
    )
    a2 = await hub.ingestor.ingest(
        InboundContact(
            Channel.SMS,
            "+491717777777",
            text="two",
            provider_id="S2",
            occurred_at=t.replace(hour=1),
        )
    )
    b = await hub.ingestor.ingest(
        InboundContact(Channel.EMAIL, "b@example.org", subject="Hi", text="mail", provider_id="<m>")
    )
    assert a1.conversation_id == a2.conversation_id
    _, body = await api.call("GET", "/api/v1/conversations", "agent")
    assert [c["id"] for c in body["items"]] == [b.conversation_id, a1.conversation_id]
    for query, expected in {
        f"customer_id={a1.customer_id}": [a1.conversation_id],
        "channel=email": [b.conversation_id],
        "status=open": [b.conversation_id, a1.conversation_id],
        "status=closed": [],
        f"team_id={api.team_ids['Support']}": [b.conversation_id, a1.conversation_id],
    }.items():
        _, body = await api.call("GET", f"/api/v1/conversations?{query}", "agent")
        assert [c["id"] for c in body["items"]] == expected, query
    status, conv = await api.call("GET", f"/api/v1/conversations/{a1.conversation_id}", "agent")
    assert status == 200
    assert (conv["channel"], conv["status"], [i["text"] for i in conv["interactions"]]) == (
        "sms",
        "open",
        ["one", "two"],
    )
    status, conv = await api.call(
        "PATCH",
        f"/api/v1/conversations/{a1.conversation_id}",
        "agent",
        json={"status": "closed", "assignee_id": api.user_ids["agent"]},
    )
    assert (status, conv["status"], conv["assignee_id"]) == (200, "closed", api.user_ids["agent"])
    _, body = await api.call(
        "GET", f"/api/v1/conversations?assignee_id={api.user_ids['agent']}", "agent"
    )
    assert [c["id"] for c in body["items"]] == [a1.conversation_id]
    status, err = await api.call(
        "PATCH", f"/api/v1/conversations/{a1.conversation_id}", "agent", json={"assignee_id": 999}
    )
    assert (status, err) == (422, {"error": "invalid", "detail": "assignee_id: no user 999"})
    status, err = await api.call("GET", "/api/v1/conversations?status=sleeping", "agent")
    assert (status, err["detail"]) == (400, "status must be open, pending or closed")
    # A new SMS after closing opens a new conversation.
    a3 = await hub.ingestor.ingest(
        InboundContact(Channel.SMS, "+491717777777", text="three", provider_id="S3")
    )
    assert a3.conversation_id not in (a1.conversation_id, b.conversation_id)


async def test_task_crud(api: Api, hub: Hub) -> None:
    r = await hub.ingestor.ingest(InboundContact(Channel.SMS, "+491718888888", provider_id="S1"))
    status, task = await api.call(
        "POST",
        "/api/v1/tasks",
        "agent",
        json={
            "customer_id": r.customer_id,
            "title": "Call back",
            "due_at": "2026-12-01T09:00:00+01:00",
        },
    )
    assert status == 201
    assert {k: task[k] for k in ("customer_id", "title", "due_at", "done", "assignee_id")} == {
        "customer_id": r.customer_id,
        "title": "Call back",
        "due_at": "2026-12-01T08:00:00+00:00",
        "done": False,
        "assignee_id": api.user_ids["agent"],
    }
    await api.call(
        "POST", "/api/v1/tasks", "agent", json={"customer_id": r.customer_id, "title": "Later"}
    )
    status, done = await api.call(
        "PATCH", f"/api/v1/tasks/{task['id']}", "agent", json={"done": True, "title": "Called"}
    )
    assert (status, done["done"], done["title"]) == (200, True, "Called")
    for query, titles in {
        "done=true": ["Called"],
        "done=false": ["Later"],
        "due_before=2026-12-02T00:00:00Z": ["Called"],
        f"customer_id={r.customer_id}": ["Called", "Later"],
    }.items():
        _, body = await api.call("GET", f"/api/v1/tasks?{query}", "agent")
        assert [t["title"] for t in body["items"]] == titles, query
    assert (await api.call("DELETE", f"/api/v1/tasks/{task['id']}", "agent"))[0] == 204
    assert (await api.call("GET", f"/api/v1/tasks/{task['id']}", "agent"))[0] == 404
    status, err = await api.call(
        "POST", "/api/v1/tasks", "agent", json={"customer_id": r.customer_id, "title": ""}
    )
    assert (status, err["detail"][0]["field"]) == (422, "title")


async def test_assigning_outside_the_team_is_a_422(api: Api, hub: Hub) -> None:
    r = await hub.ingestor.ingest(InboundContact(Channel.SMS, "+491719999999", provider_id="S9"))
    sales = api.user_ids["sales_agent"]
    support = api.team_ids["Support"]
    detail = f"assignee_id: user {sales} is not a member of team {support}"
    conv = f"/api/v1/conversations/{r.conversation_id}"
    assert await api.call("PATCH", conv, "sup", json={"assignee_id": sales}) == (
        422,
        {"error": "invalid", "detail": detail},
    )
    task = {"customer_id": r.customer_id, "title": "Call back", "assignee_id": sales}
    assert await api.call("POST", "/api/v1/tasks", "sup", json=task) == (
        422,
        {"error": "invalid", "detail": detail},
    )
    status, created = await api.call(
        "POST", "/api/v1/tasks", "sup", json={**task, "assignee_id": api.user_ids["agent"]}
    )
    assert status == 201
    assert await api.call(
        "PATCH", f"/api/v1/tasks/{created['id']}", "sup", json={"assignee_id": sales}
    ) == (422, {"error": "invalid", "detail": detail})
    # Team members and admins may be given it.
    for user in ("agent", "admin"):
        status, body = await api.call(
            "PATCH", conv, "sup", json={"assignee_id": api.user_ids[user]}
        )
        assert (status, body["assignee_id"]) == (200, api.user_ids[user])
