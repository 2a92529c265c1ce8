"""GET /api/v1/customers/{id}/consent: the consent in force and every change, with
source and time (recording stays POST on the same path, hub/web/api/customers.py)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from hub.records.consent import consent_history, consent_in_force
from hub.records.customers import CustomerStore
from hub.web.auth import HUB, principal_of
from hub.web.params import MAX_ID, path_int

routes = web.RouteTableDef()


@routes.get("/api/v1/customers/{id}/consent")
async def show(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    async with hub.db.read() as s:
        store = CustomerStore(s, principal_of(request), hub.settings.identity.default_region)
        customer = await store.get(path_int(request))
        assert customer.id is not None
        conn = await s.connection()
        in_force = await consent_in_force(conn, [customer.id])
        history = await consent_history(conn, customer.id)
    return web.json_response(
        {"customer_id": customer.id, "consent": in_force.get(customer.id, []), "history": history}
    )


_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
}
OPERATIONS: list[tuple[str, str, str, list[dict[str, Any]], None, str]] = [
    (
        "get",
        "/api/v1/customers/{id}/consent",
        "Consent in force per channel and purpose, and every opt-in and opt-out "
        "(newest first) with its source and time",
        [_ID],
        None,
        "200",
    )
]
