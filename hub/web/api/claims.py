"""/api/v1/identity-claims: identities given for a customer that another team's customer holds."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import delete, select

from hub.errors import Forbidden, NotFound
from hub.records.claims import list_claims
from hub.store.models import Role
from hub.store.tables import claim_t, customer_t
from hub.web.auth import HUB, principal_of
from hub.web.params import path_int

routes = web.RouteTableDef()


def _supervisor(request: web.Request) -> None:
    if principal_of(request).role not in (Role.ADMIN, Role.SUPERVISOR):
        raise Forbidden("only supervisors and admins resolve identity claims")


@routes.get("/api/v1/identity-claims")
async def claims(request: web.Request) -> web.Response:
    _supervisor(request)
    async with request.app[HUB].db.read() as s:
        items = await list_claims(await s.connection(), principal_of(request))
    return web.json_response({"items": items})


@routes.delete("/api/v1/identity-claims/{id}")
async def drop_claim(request: web.Request) -> web.Response:
    """Drop a claim (the identity stays with its holder); merging the records is the other way."""
    _supervisor(request)
    principal = principal_of(request)
    claim_id = path_int(request)
    async with request.app[HUB].db.write() as s:
        conn = await s.connection()
        team = (
            await conn.execute(
                select(customer_t.c.team_id)
                .join(claim_t, claim_t.c.customer_id == customer_t.c.id)
                .where(claim_t.c.id == claim_id)
            )
        ).first()
        if team is None or not (principal.is_admin or team[0] in principal.team_ids):
            raise NotFound(f"no identity claim {claim_id}")
        await conn.execute(delete(claim_t).where(claim_t.c.id == claim_id))
    return web.Response(status=204)
