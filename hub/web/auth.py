"""Bearer-token authentication for /api/v1, and password login that issues a token."""

from __future__ import annotations

import math
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler

from hub.privacy.audit import Entry
from hub.records.auth import (
    Principal,
    authenticate_password,
    authenticate_token,
    issue_token,
    revoke_token,
)
from hub.records.schemas import LoginIn
from hub.records.throttle import LoginThrottle
from hub.runtime import Hub
from hub.web.console.session import SESSION_COOKIE
from hub.web.errors import ApiError
from hub.web.params import read_body

HUB = web.AppKey("hub", Hub)
THROTTLE = web.AppKey("login_throttle", LoginThrottle)
PRINCIPAL = web.RequestKey("principal", Principal)
TOKEN = web.RequestKey("token", str)
# The token endpoint is public for POST (login) only: DELETE (logout) needs the token.
PUBLIC_PATHS = frozenset({("GET", "/api/v1/openapi.json"), ("POST", "/api/v1/auth/token")})
EVENTS_PATH = "/api/v1/events"
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="crmhub"'}


def principal_of(request: web.Request) -> Principal:
    return request[PRINCIPAL]


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    header = request.headers.get("Authorization", "")
    if request.path == EVENTS_PATH and not header:
        # The console's page: its session cookie, from our own origin only (a
        # cross-site page would otherwise open the stream with the agent's cookie).
        token = request.cookies.get(SESSION_COOKIE, "")
        if token:
            origin = request.headers.get("Origin", "")
            if origin and urlsplit(origin).netloc != request.host:
                raise ApiError(403, "the event stream is not open to other sites")
            hub = request.app[HUB]
            principal = await authenticate_token(
                hub.db, token, idle_days=hub.settings.auth.token_idle_days
            )
            if principal is not None:
                request[PRINCIPAL] = principal
        return await handler(request)  # else a client authenticates in its first frame
    if request.path.startswith("/api/") and (request.method, request.path) not in PUBLIC_PATHS:
        scheme, _, token = header.partition(" ")
        if not header:
            raise ApiError(401, "missing bearer token", _CHALLENGE)
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "Authorization must be 'Bearer <token>'", _CHALLENGE)
        hub = request.app[HUB]
        principal = await authenticate_token(
            hub.db, token.strip(), idle_days=hub.settings.auth.token_idle_days
        )
        if principal is None:
            raise ApiError(401, "invalid, expired or revoked token", _CHALLENGE)
        request[PRINCIPAL] = principal
        request[TOKEN] = token.strip()
    return await handler(request)


async def login(request: web.Request) -> web.Response:
    """POST /api/v1/auth/token: username + password -> a new API token."""
    body = await read_body(request, LoginIn)
    hub = request.app[HUB]
    throttle = request.app[THROTTLE]
    address = request.remote or "unknown"
    wait = throttle.wait(body.username, address)
    if wait > 0:
        # Refused before the password is looked at: guessing costs time, not our CPU.
        seconds = math.ceil(wait)
        raise ApiError(
            429,
            f"too many failed logins; try again in {seconds} s",
            {"Retry-After": str(seconds)},
        )
    principal = await authenticate_password(
        hub.db, body.username, body.password, cost=hub.settings.auth.password_cost
    )
    if principal is None:
        throttle.failed(body.username, address)
        hub.audit.record(
            Entry(None, "login_failed", "user", client=address, detail={"username": body.username})
        )
        raise ApiError(401, "wrong username or password", _CHALLENGE)
    throttle.succeeded(body.username)
    token = await issue_token(hub.db, principal.username, name="login")
    hub.audit.record(Entry(principal.user_id, "login", "user", principal.user_id, client=address))
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


async def logout(request: web.Request) -> web.Response:
    """DELETE /api/v1/auth/token: the presented token stops working."""
    await revoke_token(request.app[HUB].db, request[TOKEN])
    return web.Response(status=204)


def login_throttle(hub: Hub) -> LoginThrottle:
    auth = hub.settings.auth
    return LoginThrottle(
        free=auth.login_free_failures,
        free_per_address=auth.login_free_failures_per_address,
        max_delay=auth.login_max_delay_seconds,
    )
