"""/api/v1/conversations and /api/v1/tasks."""

from __future__ import annotations

from aiohttp import web
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.events.kinds import conversation_assigned
from hub.records.history import HistoryStore
from hub.records.schemas import ConversationPatch, TaskIn, TaskPatch
from hub.store.models import ConversationStatus
from hub.web.auth import HUB, principal_of
from hub.web.errors import ApiError
from hub.web.params import (
    id_cursor,
    page_response,
    path_int,
    query_bool,
    query_int,
    query_limit,
    query_time,
    read_body,
)
from hub.web.serialize import conversation_json, interaction_json, task_json

routes = web.RouteTableDef()


def _store(request: web.Request, session: AsyncSession) -> HistoryStore:
    region = request.app[HUB].settings.identity.default_region
    return HistoryStore(session, principal_of(request), region)


def _page(request: web.Request) -> tuple[int | None, int]:
    api = request.app[HUB].settings.api
    return id_cursor(request), query_limit(request, api.page_size, api.max_page_size)


@routes.get("/api/v1/conversations")
async def list_conversations(request: web.Request) -> web.Response:
    status = request.query.get("status") or None
    if status is not None and status not in {s.value for s in ConversationStatus}:
        raise ApiError(400, "status must be open, pending or closed")
    after, limit = _page(request)
    async with request.app[HUB].db.read() as s:
        page, nxt = await _store(request, s).conversations(
            customer_id=query_int(request, "customer_id"),
            channel=request.query.get("channel") or None,
            status=status,
            assignee_id=query_int(request, "assignee_id"),
            team_id=query_int(request, "team_id"),
            after_id=after,
            limit=limit,
        )
    return page_response([conversation_json(c) for c in page], nxt)


@routes.get("/api/v1/conversations/{id}")
async def get_conversation(request: web.Request) -> web.Response:
    async with request.app[HUB].db.read() as s:
        store = _store(request, s)
        conv = await store.conversation(path_int(request))
        interactions = await store.conversation_interactions(conv)
    return web.json_response(
        {**conversation_json(conv), "interactions": [interaction_json(i) for i in interactions]}
    )


@routes.patch("/api/v1/conversations/{id}")
async def update_conversation(request: web.Request) -> web.Response:
    body = await read_body(request, ConversationPatch)
    hub = request.app[HUB]
    async with hub.db.write() as s:
        store = _store(request, s)
        before = (await store.conversation(path_int(request))).assignee_id
        conv = await store.update_conversation(path_int(request), body)
    if conv.assignee_id != before and conv.id is not None:
        # After the commit: the new assignee's console learns of it at once.
        hub.bus.publish(
            conversation_assigned(
                conversation_id=conv.id,
                customer_id=conv.customer_id,
                assignee_id=conv.assignee_id,
                team_id=conv.team_id,
            )
        )
    return web.json_response(conversation_json(conv))


@routes.get("/api/v1/tasks")
async def list_tasks(request: web.Request) -> web.Response:
    after, limit = _page(request)
    async with request.app[HUB].db.read() as s:
        page, nxt = await _store(request, s).tasks(
            customer_id=query_int(request, "customer_id"),
            assignee_id=query_int(request, "assignee_id"),
            done=query_bool(request, "done"),
            due_before=query_time(request, "due_before"),
            after_id=after,
            limit=limit,
        )
    return page_response([task_json(t) for t in page], nxt)


@routes.post("/api/v1/tasks")
async def create_task(request: web.Request) -> web.Response:
    body = await read_body(request, TaskIn)
    async with request.app[HUB].db.write() as s:
        task = await _store(request, s).create_task(body)
    return web.json_response(task_json(task), status=201)


@routes.get("/api/v1/tasks/{id}")
async def get_task(request: web.Request) -> web.Response:
    async with request.app[HUB].db.read() as s:
        task = await _store(request, s).task(path_int(request))
    return web.json_response(task_json(task))


@routes.patch("/api/v1/tasks/{id}")
async def update_task(request: web.Request) -> web.Response:
    body = await read_body(request, TaskPatch)
    async with request.app[HUB].db.write() as s:
        task = await _store(request, s).update_task(path_int(request), body)
    return web.json_response(task_json(task))


@routes.delete("/api/v1/tasks/{id}")
async def delete_task(request: web.Request) -> web.Response:
    async with request.app[HUB].db.write() as s:
        await _store(request, s).delete_task(path_int(request))
    return web.Response(status=204)
