"""/api/v1/segments: saved customer filters, their live count and a preview.

Counts and previews run under the asking user's team scope: what marketing
sees is what their customers are. The filter's shape: hub/segments/filters.py.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import Field

from hub.records.schemas import Id, _In
from hub.segments import query
from hub.segments.filters import SegmentFilter, parse_filter
from hub.segments.store import (
    as_json,
    create_segment,
    default_team,
    delete_segment,
    get_segment,
    list_segments,
    segment_filter,
    update_segment,
)
from hub.web.auth import HUB, principal_of
from hub.web.params import MAX_ID, path_int, query_limit, read_body

routes = web.RouteTableDef()
PREVIEW_DEFAULT, PREVIEW_MAX = 20, 200


class SegmentIn(_In):
    name: str = Field(min_length=1, max_length=100)
    # Validated by hub/segments/filters.py: unknown fields or operators are a 422 naming them.
    filter: dict[str, Any] = Field(default_factory=dict)
    team_id: Id | None = None


class SegmentPatch(_In):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    filter: dict[str, Any] | None = None


class PreviewIn(_In):
    filter: dict[str, Any] = Field(default_factory=dict)
    limit: int = Field(default=PREVIEW_DEFAULT, ge=1, le=PREVIEW_MAX)


async def _preview(request: web.Request, flt: SegmentFilter, limit: int) -> dict[str, Any]:
    principal = principal_of(request)
    async with request.app[HUB].db.read() as s:
        conn = await s.connection()
        total = await query.count(conn, flt, principal)
        items = await query.preview(conn, flt, principal, limit)
    return {"count": total, "items": items}


@routes.get("/api/v1/segments")
async def list_all(request: web.Request) -> web.Response:
    async with request.app[HUB].db.read() as s:
        rows = await list_segments(await s.connection(), principal_of(request))
    return web.json_response({"items": [as_json(r) for r in rows]})


@routes.post("/api/v1/segments")
async def create(request: web.Request) -> web.Response:
    body = await read_body(request, SegmentIn)
    principal = principal_of(request)
    team_id = body.team_id if "team_id" in body.model_fields_set else default_team(principal)
    async with request.app[HUB].db.write() as s:
        row = await create_segment(
            await s.connection(),
            principal,
            name=body.name,
            filter_data=body.filter,
            team_id=team_id,
        )
    return web.json_response(
        as_json(row), status=201, headers={"Location": f"/api/v1/segments/{row.id}"}
    )


@routes.post("/api/v1/segments/preview")
async def preview_unsaved(request: web.Request) -> web.Response:
    body = await read_body(request, PreviewIn)
    return web.json_response(await _preview(request, parse_filter(body.filter), body.limit))


@routes.get("/api/v1/segments/{id}")
async def show(request: web.Request) -> web.Response:
    async with request.app[HUB].db.read() as s:
        row = await get_segment(await s.connection(), principal_of(request), path_int(request))
    return web.json_response(as_json(row))


@routes.patch("/api/v1/segments/{id}")
async def change(request: web.Request) -> web.Response:
    body = await read_body(request, SegmentPatch)
    async with request.app[HUB].db.write() as s:
        row = await update_segment(
            await s.connection(),
            principal_of(request),
            path_int(request),
            name=body.name,
            filter_data=body.filter,
        )
    return web.json_response(as_json(row))


@routes.delete("/api/v1/segments/{id}")
async def delete(request: web.Request) -> web.Response:
    async with request.app[HUB].db.write() as s:
        await delete_segment(await s.connection(), principal_of(request), path_int(request))
    return web.Response(status=204)


@routes.get("/api/v1/segments/{id}/count")
async def count(request: web.Request) -> web.Response:
    principal = principal_of(request)
    async with request.app[HUB].db.read() as s:
        conn = await s.connection()
        row = await get_segment(conn, principal, path_int(request))
        total = await query.count(conn, segment_filter(row), principal)
    return web.json_response({"segment_id": row.id, "count": total})


@routes.get("/api/v1/segments/{id}/preview")
async def preview_saved(request: web.Request) -> web.Response:
    limit = query_limit(request, PREVIEW_DEFAULT, PREVIEW_MAX)
    async with request.app[HUB].db.read() as s:
        row = await get_segment(await s.connection(), principal_of(request), path_int(request))
    return web.json_response(
        {"segment_id": row.id, **await _preview(request, segment_filter(row), limit)}
    )


_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
}
_LIMIT = {
    "name": "limit",
    "in": "query",
    "schema": {"type": "integer", "minimum": 1, "maximum": PREVIEW_MAX},
}
# For hub/web/openapi.py: (method, path, summary, parameters, body model, success status).
OPERATIONS: list[tuple[str, str, str, list[dict[str, Any]], type[_In] | None, str]] = [
    (
        "get",
        "/api/v1/segments",
        "Saved segments you may use (shared and your teams')",
        [],
        None,
        "200",
    ),
    (
        "post",
        "/api/v1/segments",
        "Save a segment: a filter over postal_code, city, country, industry, tags, owner_id, "
        "team_id, kind, last_inbound/last_outbound/last_contact, replied_to_campaign, custom, "
        "consent (README: Segments); 422 naming an unknown field or operator",
        [],
        SegmentIn,
        "201",
    ),
    (
        "post",
        "/api/v1/segments/preview",
        "Count and the first `limit` customers of an unsaved filter (your teams' customers)",
        [],
        PreviewIn,
        "200",
    ),
    ("get", "/api/v1/segments/{id}", "Read a segment", [_ID], None, "200"),
    (
        "patch",
        "/api/v1/segments/{id}",
        "Rename a segment or change its filter",
        [_ID],
        SegmentPatch,
        "200",
    ),
    (
        "delete",
        "/api/v1/segments/{id}",
        "Delete a segment (409 while a campaign uses it)",
        [_ID],
        None,
        "204",
    ),
    (
        "get",
        "/api/v1/segments/{id}/count",
        "How many customers the segment selects now",
        [_ID],
        None,
        "200",
    ),
    (
        "get",
        "/api/v1/segments/{id}/preview",
        "Count and the first `limit` customers (by id) the segment selects now",
        [_ID, _LIMIT],
        None,
        "200",
    ),
]
