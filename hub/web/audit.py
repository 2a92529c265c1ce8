"""Every API request of a logged-in user leaves an audit entry: who, what, when, from where.

Derived in one place from the route and the answer, so a new endpoint is
audited without remembering to: the action from the method (a GET of one
object is a "read", of a list a "search"), the object from the route's
`{id}`, and the customer it is about from the path or the JSON answer's
`customer_id`. Query strings are not recorded (search terms are personal
data; who searched when is what the audit needs).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from hub.privacy.audit import Entry
from hub.web.auth import HUB, PRINCIPAL

_VERBS = {"POST": "create", "PATCH": "change", "PUT": "change", "DELETE": "delete"}
_ENTITIES = {
    "customers": "customer",
    "conversations": "conversation",
    "tasks": "task",
    "lookup": "customer",
    "auth": "token",
    "audit": "audit",
    "calls": "call",
}


def _customer_of(request: web.Request, entity: str, response: web.StreamResponse) -> int | None:
    if entity == "customer" and "id" in request.match_info:
        raw = request.match_info["id"]
        return int(raw) if raw.isdigit() else None
    if not isinstance(response, web.Response) or response.content_type != "application/json":
        return None
    try:
        body: Any = json.loads(response.body or b"null")  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not isinstance(body, dict):
        return None
    if isinstance(body.get("customer_id"), int):
        return int(body["customer_id"])
    if entity == "customer" and isinstance(body.get("id"), int):
        return int(body["id"])
    customer = body.get("customer")
    if isinstance(customer, dict) and isinstance(customer.get("id"), int):
        return int(customer["id"])  # a lookup's answer
    return None


@web.middleware
async def audit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    principal = request.get(PRINCIPAL)
    if principal is None or response.status >= 400:
        return response
    route = request.match_info.route
    template = route.resource.canonical if route.resource is not None else request.path
    parts = template.split("/")
    entity = _ENTITIES.get(parts[3] if len(parts) > 3 else "", "api")
    has_id = "{id}" in template
    action = _VERBS.get(request.method) or ("read" if has_id else "search")
    raw_id = request.match_info.get("id", "")
    request.app[HUB].audit.record(
        Entry(
            actor_id=principal.user_id or None,
            action=action,
            entity=entity,
            entity_id=int(raw_id) if raw_id.isdigit() else None,
            customer_id=_customer_of(request, entity, response),
            client=request.remote,
            detail={"route": f"{request.method} {template}", "status": response.status},
        )
    )
    return response
