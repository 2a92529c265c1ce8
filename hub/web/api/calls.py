"""POST /api/v1/calls: click-to-dial for the asking agent (hub/calls/dial.py)."""

from __future__ import annotations

from aiohttp import web

from hub.calls.dial import CallIn, DialUnavailable, click_to_dial
from hub.web.auth import HUB, principal_of
from hub.web.errors import error_response
from hub.web.params import read_body

routes = web.RouteTableDef()


@routes.post("/api/v1/calls")
async def post_call(request: web.Request) -> web.Response:
    """201: the provider accepted the call; it is in the customer's history."""
    body = await read_body(request, CallIn)
    try:
        placed = await click_to_dial(request.app[HUB], principal_of(request), body)
    except DialUnavailable as exc:
        return error_response(502, str(exc))
    return web.json_response(placed, status=201)
