"""/api/v1/templates: message templates with versions, and a preview for one customer."""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import Field

from hub.errors import Forbidden, Invalid, NotFound
from hub.records.customers import CustomerStore
from hub.records.schemas import Id, _In
from hub.segments.store import WRITERS
from hub.subscriptions.links import preview_unsubscribe_url
from hub.templating import TemplateError, recipient_contexts, render
from hub.templating.store import (
    add_version,
    create_template,
    get_template,
    list_templates,
    parts_from,
    versions,
)
from hub.web.auth import HUB, principal_of
from hub.web.params import MAX_ID, path_int, query_int, read_body

routes = web.RouteTableDef()
PART = Field(default="", max_length=200_000)


class TemplateIn(_In):
    name: str = Field(min_length=1, max_length=100)
    channel: Literal["email", "sms"]
    locale: str = Field(default="de", min_length=2, max_length=10, pattern=r"^[A-Za-z_-]+$")
    subject: str = Field(default="", max_length=1000)
    html: str = PART
    text: str = PART
    body: str = Field(default="", max_length=5000)


class TemplateVersionIn(_In):
    subject: str = Field(default="", max_length=1000)
    html: str = PART
    text: str = PART
    body: str = Field(default="", max_length=5000)


class TemplatePreviewIn(_In):
    customer_id: Id
    version: Id | None = None
    # Names a campaign adds (e.g. "headline"); the customer's own names win.
    extra: dict[str, str] = Field(default_factory=dict, max_length=50)


def _writer(request: web.Request) -> int:
    principal = principal_of(request)
    if principal.role not in WRITERS:
        raise Forbidden(f"role {principal.role.value} may not write templates")
    return principal.user_id


@routes.get("/api/v1/templates")
async def list_all(request: web.Request) -> web.Response:
    async with request.app[HUB].db.read() as s:
        items = await list_templates(await s.connection())
    return web.json_response({"items": items})


@routes.post("/api/v1/templates")
async def create(request: web.Request) -> web.Response:
    body = await read_body(request, TemplateIn)
    user_id = _writer(request)
    async with request.app[HUB].db.write() as s:
        stored = await create_template(
            await s.connection(),
            name=body.name,
            channel=body.channel,
            locale=body.locale,
            parts=parts_from(body.model_dump()),
            created_by=user_id,
        )
    return web.json_response(
        stored.as_json(), status=201, headers={"Location": f"/api/v1/templates/{stored.id}"}
    )


@routes.get("/api/v1/templates/{id}")
async def show(request: web.Request) -> web.Response:
    version = query_int(request, "version")
    async with request.app[HUB].db.read() as s:
        conn = await s.connection()
        stored = await get_template(conn, path_int(request), version)
        history = await versions(conn, stored.id)
    return web.json_response({**stored.as_json(), "versions": history})


@routes.post("/api/v1/templates/{id}/versions")
async def new_version(request: web.Request) -> web.Response:
    body = await read_body(request, TemplateVersionIn)
    user_id = _writer(request)
    async with request.app[HUB].db.write() as s:
        stored = await add_version(
            await s.connection(), path_int(request), parts_from(body.model_dump()), user_id
        )
    return web.json_response(stored.as_json(), status=201)


@routes.post("/api/v1/templates/{id}/preview")
async def preview(request: web.Request) -> web.Response:
    """The template rendered for one customer you may see; 422 with the reason if it fails."""
    body = await read_body(request, TemplatePreviewIn)
    hub = request.app[HUB]
    async with hub.db.read() as s:
        conn = await s.connection()
        stored = await get_template(conn, path_int(request), body.version)
        store = CustomerStore(s, principal_of(request), hub.settings.identity.default_region)
        customer = await store.get_for_reference("customer_id", body.customer_id)
        assert customer.id is not None
        contexts = await recipient_contexts(conn, [customer.id])
    if customer.id not in contexts:
        raise NotFound(f"no customer {customer.id}")
    context: dict[str, Any] = {
        **body.extra,
        "unsubscribe_url": preview_unsubscribe_url(hub.settings, customer.id),
        **contexts[customer.id],
    }
    try:
        rendered = render(stored.parts, context)
    except TemplateError as exc:
        raise Invalid(f"template {stored.name} v{stored.version}: {exc.reason}") from None
    return web.json_response(
        {
            "template_id": stored.id,
            "version": stored.version,
            "customer_id": customer.id,
            "subject": rendered.subject,
            "html": rendered.html,
            "text": rendered.text,
            "body": rendered.body,
        }
    )


_ID_SCHEMA = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
_ID = {"name": "id", "in": "path", "required": True, "schema": _ID_SCHEMA}
_VERSION = {
    "name": "version",
    "in": "query",
    "schema": _ID_SCHEMA,
    "description": "default: newest",
}
# For hub/web/openapi.py: (method, path, summary, parameters, body model, success status).
OPERATIONS: list[tuple[str, str, str, list[dict[str, Any]], type[_In] | None, str]] = [
    (
        "get",
        "/api/v1/templates",
        "Message templates with their newest version number",
        [],
        None,
        "200",
    ),
    (
        "post",
        "/api/v1/templates",
        "Create a template (Jinja2, sandboxed): email = subject + html and/or text, sms = body; "
        "422 naming the part and line that does not compile; 409 for a name in use",
        [],
        TemplateIn,
        "201",
    ),
    (
        "get",
        "/api/v1/templates/{id}",
        "A template at a version, with its version list",
        [_ID, _VERSION],
        None,
        "200",
    ),
    (
        "post",
        "/api/v1/templates/{id}/versions",
        "Edit a template: every edit is a new version; older versions stay as they were",
        [_ID],
        TemplateVersionIn,
        "201",
    ),
    (
        "post",
        "/api/v1/templates/{id}/preview",
        "Render the template for one customer you may see; 422 with the reason if it fails "
        "(e.g. an undefined name without a default)",
        [_ID],
        TemplatePreviewIn,
        "200",
    ),
]
