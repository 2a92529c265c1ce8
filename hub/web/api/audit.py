"""GET /api/v1/audit: the audit log, for admins, with filters."""

from __future__ import annotations

from aiohttp import web

from hub.errors import Forbidden
from hub.privacy.audit import AuditQuery, entry_json, search
from hub.web.auth import HUB, principal_of
from hub.web.params import id_cursor, page_response, query_int, query_limit, query_time

routes = web.RouteTableDef()


@routes.get("/api/v1/audit")
async def audit(request: web.Request) -> web.Response:
    if not principal_of(request).is_admin:
        raise Forbidden("only admins may read the audit log")
    hub = request.app[HUB]
    limit = query_limit(request, hub.settings.api.page_size, hub.settings.api.max_page_size)
    await hub.audit.flush()  # what this very session just did is in the answer
    rows = await search(
        hub.db,
        AuditQuery(
            actor_id=query_int(request, "user_id"),
            customer_id=query_int(request, "customer_id"),
            action=request.query.get("action") or None,
            since=query_time(request, "since"),
            until=query_time(request, "until"),
            after_id=id_cursor(request),
            limit=limit + 1,
        ),
    )
    page = rows[:limit]
    return page_response(
        [entry_json(r) for r in page], page[-1].id if len(rows) > limit and page else None
    )
