"""Console sessions and CSRF: a cookie holding an API token, forms with a double-submit token.

The session cookie holds an ordinary API token (so logout, expiry, revoke
and disable work exactly as for the API), HttpOnly so page scripts cannot
read it, SameSite=Lax, and Secure when the request came over https. Every
form carries a CSRF token that must equal the `crmhub_csrf` cookie: another
site can make the browser send our cookies but cannot read them to fill in
the form.
"""

from __future__ import annotations

import hmac
import secrets

from aiohttp import web

from hub.records.auth import Principal, authenticate_token
from hub.runtime import Hub

SESSION_COOKIE = "crmhub_session"
CSRF_COOKIE = "crmhub_csrf"
CSRF_FIELD = "csrf"
NEW_CSRF = web.RequestKey("new_csrf", str)


def secure(request: web.Request) -> bool:
    return request.secure or request.headers.get("X-Forwarded-Proto", "") == "https"


def set_session(request: web.Request, response: web.StreamResponse, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE, token, httponly=True, samesite="Lax", secure=secure(request), path="/"
    )


def clear_session(response: web.StreamResponse) -> None:
    response.del_cookie(SESSION_COOKIE, path="/")


def csrf_token(request: web.Request) -> str:
    """The request's CSRF token (a new one when the browser has none yet)."""
    existing = request.cookies.get(CSRF_COOKIE, "")
    if len(existing) >= 32:
        return existing
    if NEW_CSRF not in request:
        request[NEW_CSRF] = secrets.token_urlsafe(32)
    return request[NEW_CSRF]


def remember_csrf(request: web.Request, response: web.StreamResponse) -> None:
    if NEW_CSRF in request:
        response.set_cookie(
            CSRF_COOKIE,
            request[NEW_CSRF],
            httponly=True,
            samesite="Lax",
            secure=secure(request),
            path="/",
        )


def csrf_ok(request: web.Request, submitted: str) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    return len(cookie) >= 32 and hmac.compare_digest(cookie.encode(), submitted.encode())


async def session_principal(request: web.Request, hub: Hub) -> Principal | None:
    token = request.cookies.get(SESSION_COOKIE, "")
    if not token:
        return None
    return await authenticate_token(hub.db, token, idle_days=hub.settings.auth.token_idle_days)
