"""Console pages for presence, the supervisor's team view, editing and creating customers.

Kept apart from pages.py (the agent's reading and writing of one customer)
so each module stays small; both share its rendering and session handling.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from sqlalchemy import select

from hub.errors import DomainError, Forbidden
from hub.events.presence import Status
from hub.records.customers import CustomerStore
from hub.records.history import HistoryStore
from hub.records.schemas import ConversationPatch, CustomerIn, CustomerPatch
from hub.store.models import ConversationStatus, Role
from hub.store.tables import user_t
from hub.web.auth import HUB, PRINCIPAL
from hub.web.console.calls import missed_calls
from hub.web.console.pages import _history, _when, render
from hub.web.console.paths import path_id

routes = web.RouteTableDef()


@routes.get("/")
async def my_work(request: web.Request) -> web.Response:
    principal = request[PRINCIPAL]
    now = datetime.now(UTC)
    async with request.app[HUB].db.read() as s:
        history = _history(request, s)
        tasks, _ = await history.tasks(
            customer_id=None,
            assignee_id=principal.user_id,
            done=False,
            due_before=None,
            after_id=None,
            limit=200,
        )
        conversations, _ = await history.conversations(
            customer_id=None,
            channel=None,
            status=ConversationStatus.OPEN.value,
            assignee_id=principal.user_id,
            team_id=None,
            after_id=None,
            limit=100,
        )
        missed = await missed_calls(await s.connection(), principal, now)
    far = datetime.max.replace(tzinfo=UTC)
    ordered = sorted(tasks, key=lambda t: (t.due_at or far, t.id or 0))  # overdue first
    presence = request.app[HUB].presence
    return render(
        request,
        "work.html",
        presence_status=presence.status(principal.user_id).value,
        supervisor=principal.role in (Role.ADMIN, Role.SUPERVISOR),
        tasks=[
            {
                "customer_id": t.customer_id,
                "title": t.title,
                "due": _when(t.due_at),
                "overdue": bool(t.due_at and t.due_at < now),
            }
            for t in ordered
        ],
        conversations=conversations,
        missed=missed,
        message=request.query.get("done"),
        error=request.query.get("error"),
    )


def _stores(request: web.Request, session: Any) -> tuple[CustomerStore, HistoryStore]:
    region = request.app[HUB].settings.identity.default_region
    principal = request[PRINCIPAL]
    return CustomerStore(session, principal, region), HistoryStore(session, principal, region)


@routes.post("/me/status")
async def set_status(request: web.Request) -> web.Response:
    wanted = str((await request.post()).get("status", ""))
    if wanted in (Status.AVAILABLE.value, Status.AWAY.value):
        request.app[HUB].presence.set_status(request[PRINCIPAL].user_id, Status(wanted))
    raise web.HTTPSeeOther("/")


@routes.get("/team")
async def team(request: web.Request) -> web.Response:
    principal = request[PRINCIPAL]
    if principal.role not in (Role.ADMIN, Role.SUPERVISOR):
        raise Forbidden("the team view is for supervisors")
    async with request.app[HUB].db.read() as s:
        _, history = _stores(request, s)
        conversations, _ = await history.conversations(
            customer_id=None,
            channel=None,
            status=ConversationStatus.OPEN.value,
            assignee_id=None,
            team_id=None,
            after_id=None,
            limit=500,
        )
        conn = await s.connection()
        users = (await conn.execute(select(user_t.c.id, user_t.c.username))).all()
    names = {uid: name for uid, name in users}
    groups: dict[str, list[Any]] = {}
    for c in conversations:
        key = names.get(c.assignee_id, "unassigned") if c.assignee_id else "unassigned"
        groups.setdefault(key, []).append(c)
    ordered = sorted(groups.items(), key=lambda kv: (kv[0] != "unassigned", kv[0]))
    members = [{"id": uid, "username": name} for uid, name in sorted(users, key=lambda u: u[1])]
    return render(
        request,
        "team.html",
        groups=[{"name": name, "conversations": convs} for name, convs in ordered],
        members=members,
    )


@routes.post("/conversations/{id}/assign")
async def assign(request: web.Request) -> web.Response:
    conversation_id = path_id(request)
    raw = str((await request.post()).get("assignee_id", ""))
    patch = ConversationPatch(assignee_id=int(raw) if raw.isdigit() else None)
    try:
        async with request.app[HUB].db.write() as s:
            _, history = _stores(request, s)
            await history.update_conversation(conversation_id, patch)
    except DomainError as exc:
        return render(request, "team.html", 422, groups=[], members=[], error=exc.detail)
    raise web.HTTPSeeOther("/team")


@routes.post("/customers/{id}/edit")
async def edit(request: web.Request) -> web.Response:
    customer_id = path_id(request)
    form = await request.post()
    fields = {k: str(form.get(k, "")).strip() for k in ("name", "company", "postal_code", "city")}
    tags = [t.strip() for t in str(form.get("tags", "")).split(",") if t.strip()]
    try:
        async with request.app[HUB].db.write() as s:
            store, _ = _stores(request, s)
            await store.update(customer_id, CustomerPatch(**fields, tags=tags))
    except DomainError as exc:
        raise web.HTTPSeeOther(f"/customers/{customer_id}?done={exc.detail}") from None
    raise web.HTTPSeeOther(f"/customers/{customer_id}?done=Saved")


@routes.post("/customers/new")
async def create_from_number(request: web.Request) -> web.Response:
    """The unknown caller's number becomes a customer (a lead), and its card opens."""
    phone = str((await request.post()).get("phone", "")).strip()
    hub = request.app[HUB]
    async with hub.db.write() as s:
        store, _ = _stores(request, s)
        customer = await store.create(
            CustomerIn(kind="lead", phones=[phone]), hub.teams.default_team_id
        )
    raise web.HTTPSeeOther(f"/customers/{customer.id}?done=Customer+created")
