"""Bearer-token authentication for /api/v1, and password login that issues a token."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from hub.records.auth import Principal, authenticate_password, authenticate_token, issue_token
from hub.records.schemas import LoginIn
from hub.runtime import Hub
from hub.web.errors import ApiError
from hub.web.params import read_body

HUB = web.AppKey("hub", Hub)
PRINCIPAL = web.RequestKey("principal", Principal)
PUBLIC_PATHS = frozenset({"/api/v1/openapi.json", "/api/v1/auth/token"})
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="crmhub"'}


def principal_of(request: web.Request) -> Principal:
    return request[PRINCIPAL]


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/api/") and request.path not in PUBLIC_PATHS:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            raise ApiError(401, "missing bearer token", _CHALLENGE)
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "Authorization must be 'Bearer <token>'", _CHALLENGE)
        principal = await authenticate_token(request.app[HUB].db, token.strip())
        if principal is None:
            raise ApiError(401, "invalid or revoked token", _CHALLENGE)
        request[PRINCIPAL] = principal
    return await handler(request)


async def login(request: web.Request) -> web.Response:
    """POST /api/v1/auth/token: username + password -> a new API token."""
    body = await read_body(request, LoginIn)
    db = request.app[HUB].db
    principal = await authenticate_password(db, body.username, body.password)
    if principal is None:
        raise ApiError(401, "wrong username or password", _CHALLENGE)
    token = await issue_token(db, principal.username, name="login")
    return web.json_response(
        {
            "token": token,
            "user": {
                "id": principal.user_id,
                "username": principal.username,
                "role": principal.role.value,
                "team_ids": sorted(principal.team_ids),
            },
        },
        status=201,
    )
