"""The aiohttp application: middlewares, routes, and the hub's lifecycle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from importlib.metadata import PackageNotFoundError, version

from aiohttp import web

from hub.runtime import Hub
from hub.web import query_check
from hub.web.api import audit, calls, claims, conversations, customers, events, privacy, replies
from hub.web.api import campaigns as campaigns_api
from hub.web.api import consent as consent_api
from hub.web.api import segments as segments_api
from hub.web.api import templates as templates_api
from hub.web.audit import audit_middleware
from hub.web.auth import HUB, THROTTLE, auth_middleware, login, login_throttle, logout
from hub.web.console import calls as console_calls
from hub.web.console import pages as console_pages
from hub.web.console import work as console_work
from hub.web.console.pages import console_middleware
from hub.web.errors import error_middleware, error_response
from hub.web.openapi import build_document
from hub.web.public import subscriptions as public_subscriptions
from hub.web.webhooks.mount import direct as webhooks_direct
from hub.web.webhooks.mount import mount as mount_webhooks


def _version() -> str:
    try:
        return version("crmhub")
    except PackageNotFoundError:
        return "0.0.0"


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


# Below Twilio's 15 s: a node that cannot commit a write by then fails webhooks.
READY_WRITE_SECONDS = 5.0


async def readyz(request: web.Request) -> web.Response:
    """Ready when a write commits: not merely when the database answers a SELECT."""
    refusal = await request.app[HUB].db.write_refusal(READY_WRITE_SECONDS)
    if refusal is None:
        return web.json_response({"status": "ready"})
    return error_response(503, f"database cannot take writes: {refusal}", "not_ready")


def create_app(hub: Hub, *, manage_hub: bool = True) -> web.Application:
    """`manage_hub`: start and stop the hub with the app (False when the caller owns it)."""
    document = build_document(_version(), hub.settings)
    webhook_routes: set[web.AbstractRoute] = set()  # filled by mount_webhooks below
    app = web.Application(
        middlewares=[
            error_middleware,
            webhooks_direct(webhook_routes),
            console_middleware,
            auth_middleware,
            audit_middleware,
            query_check.middleware(query_check.allowed_from(document)),
        ],
        client_max_size=hub.settings.server.max_body_bytes,
    )
    app[HUB] = hub
    app[THROTTLE] = login_throttle(hub)

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(document)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/v1/openapi.json", openapi)
    app.router.add_post("/api/v1/auth/token", login)
    app.router.add_delete("/api/v1/auth/token", logout)
    app.router.add_routes(customers.routes)
    app.router.add_routes(conversations.routes)
    app.router.add_routes(replies.routes)
    app.router.add_routes(audit.routes)
    app.router.add_routes(privacy.routes)
    app.router.add_routes(claims.routes)
    app.router.add_routes(events.routes)
    app.router.add_routes(calls.routes)
    app.router.add_routes(consent_api.routes)
    app.router.add_routes(segments_api.routes)
    app.router.add_routes(campaigns_api.routes)
    app.router.add_routes(templates_api.routes)
    public_subscriptions.mount(app)
    app.router.add_routes(console_pages.routes)
    app.router.add_routes(console_work.routes)
    app.router.add_routes(console_calls.routes)
    app.router.add_routes(console_pages.static_routes())
    webhook_routes.update(mount_webhooks(app, hub))

    if manage_hub:

        async def lifecycle(app: web.Application) -> AsyncIterator[None]:
            await hub.start()
            yield
            await hub.stop()

        app.cleanup_ctx.append(lifecycle)
    return app
