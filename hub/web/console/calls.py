"""Console pieces for the phone and follow-ups: missed calls with a call-back button,
moving and closing tasks, and who a task can be given to.

Missed calls are read from the call log (`phone_call`), scoped like every
customer read: an agent sees the missed calls of their teams' customers.
A call that was returned since — a later answered call or any outbound call
to the same customer — drops off the list, just as it closes the call-back
task (hub/calls/service.py), so the list is what is still to do.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from aiohttp import web
from sqlalchemy import and_, exists, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from hub.calls.dial import CallIn, DialUnavailable, click_to_dial
from hub.errors import DomainError, Forbidden
from hub.records.auth import Principal
from hub.records.history import HistoryStore
from hub.records.schemas import TaskPatch
from hub.store.tables import customer_t, phone_call_t, user_t, user_team_t
from hub.web.auth import HUB, PRINCIPAL
from hub.web.console.paths import path_id

routes = web.RouteTableDef()
MISSED_DAYS = 7  # older missed calls are handled through their call-back task


async def missed_calls(
    conn: AsyncConnection, principal: Principal, now: datetime, limit: int = 20
) -> list[dict[str, Any]]:
    """The principal's teams' missed inbound calls not returned since, newest first."""
    later = aliased(phone_call_t)
    returned = exists().where(
        and_(
            later.c.customer_id == phone_call_t.c.customer_id,
            later.c.started_at > phone_call_t.c.started_at,
            (later.c.direction == "out") | later.c.state.in_(("answered", "ended")),
        )
    )
    query = (
        select(
            phone_call_t.c.id,
            phone_call_t.c.from_number,
            phone_call_t.c.started_at,
            phone_call_t.c.customer_id,
            customer_t.c.name,
            customer_t.c.company,
        )
        .join(customer_t, customer_t.c.id == phone_call_t.c.customer_id)
        .where(phone_call_t.c.state == "missed")
        .where(phone_call_t.c.direction == "in")
        .where(phone_call_t.c.started_at >= now - timedelta(days=MISSED_DAYS))
        .where(~returned)
        .order_by(phone_call_t.c.started_at.desc(), phone_call_t.c.id.desc())
        .limit(limit)
    )
    if not principal.is_admin:
        query = query.where(customer_t.c.team_id.in_(sorted(principal.team_ids)))
    rows = (await conn.execute(query)).all()
    return [
        {
            "id": r.id,
            "from": r.from_number,
            "at": r.started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
            "customer_id": r.customer_id,
            "name": r.name or r.from_number,
            "company": r.company,
        }
        for r in rows
    ]


async def team_members(conn: AsyncConnection, team_id: int | None) -> list[dict[str, Any]]:
    """Who a task of a customer in `team_id` may be given to (assignment outside is a 422)."""
    if team_id is None:
        return []
    rows = await conn.execute(
        select(user_t.c.id, user_t.c.username)
        .join(user_team_t, user_team_t.c.user_id == user_t.c.id)
        .where(user_team_t.c.team_id == team_id)
        .order_by(user_t.c.username)
    )
    return [{"id": uid, "username": name} for uid, name in rows.all()]


@routes.post("/calls/{id}/callback")
async def call_back(request: web.Request) -> web.Response:
    """Click-to-dial the customer of a missed call, exactly as POST /api/v1/calls does."""
    hub = request.app[HUB]
    principal = request[PRINCIPAL]
    async with hub.db.read() as s:
        calls = await missed_calls(await s.connection(), principal, datetime.now(UTC), limit=200)
    call = next((c for c in calls if c["id"] == path_id(request)), None)
    if call is None:
        raise web.HTTPSeeOther("/?error=" + quote("That call was returned already or is not yours"))
    try:
        placed = await click_to_dial(hub, principal, CallIn(customer_id=call["customer_id"]))
    except DialUnavailable as exc:
        raise web.HTTPSeeOther("/?error=" + quote(f"The call could not be placed: {exc}")) from None
    except (DomainError, Forbidden) as exc:
        reason = exc.detail if isinstance(exc, DomainError) else str(exc)
        raise web.HTTPSeeOther("/?error=" + quote(str(reason))) from None
    raise web.HTTPSeeOther("/?done=" + quote(f"Calling {placed['to']}"))


@routes.post("/tasks/{id}/move")
async def move_task(request: web.Request) -> web.Response:
    """A new due date and/or assignee for a task; a bad date or assignee is shown, not stored."""
    task_id = path_id(request)
    form = await request.post()
    fields: dict[str, Any] = {}
    error = None
    due_raw = str(form.get("due", "")).strip()
    try:
        fields["due_at"] = parse_due(due_raw)
    except ValueError:
        error = f"due: {due_raw!r} is not a date and time"
    assignee = str(form.get("assignee_id", "")).strip()
    if assignee.isascii() and assignee.isdigit():
        fields["assignee_id"] = int(assignee)
    hub = request.app[HUB]
    region = hub.settings.identity.default_region
    try:
        async with hub.db.write() as s:
            history = HistoryStore(s, request[PRINCIPAL], region)
            task = await history.task(task_id)
            if error is None:
                task = await history.update_task(task_id, TaskPatch(**fields))
    except DomainError as exc:
        async with hub.db.read() as s:
            task = await HistoryStore(s, request[PRINCIPAL], region).task(task_id)
        error = str(exc.detail)
    if error is not None:
        raise web.HTTPSeeOther(f"/customers/{task.customer_id}?error={quote(error)}")
    raise web.HTTPSeeOther(f"/customers/{task.customer_id}?done=Task+moved")


def parse_due(raw: str) -> datetime | None:
    """A `datetime-local` field's value (UTC, as the page says); empty: no due date."""
    return datetime.fromisoformat(raw).replace(tzinfo=UTC) if raw else None
