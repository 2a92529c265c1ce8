"""The OpenAPI 3.1 document served at /api/v1/openapi.json.

Request schemas come from the same pydantic models that validate requests,
so the document cannot drift from what the server accepts.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from channels import registry
from channels.registry import ChannelConfigs
from hub.calls.dial import CallIn
from hub.records.schemas import (
    ConsentIn,
    ConversationPatch,
    CustomerIn,
    CustomerPatch,
    LoginIn,
    NoteIn,
    StatusIn,
    TaskIn,
    TaskPatch,
)
from hub.web.api import campaigns as campaigns_api
from hub.web.api import consent as consent_api
from hub.web.api import segments as segments_api
from hub.web.api import templates as templates_api
from hub.web.api.replies import ReplyBody
from hub.web.params import MAX_ID

PAGING = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}},
    {
        "name": "cursor",
        "in": "query",
        "schema": {"type": "string"},
        "description": "next_cursor of the previous page",
    },
]
# Any other id is a 400 (hub/web/params.py): the range is part of the contract.
ID_SCHEMA = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
ID = {"name": "id", "in": "path", "required": True, "schema": ID_SCHEMA}


def _q(name: str, kind: str = "string", desc: str = "") -> dict[str, Any]:
    param: dict[str, Any] = {"name": name, "in": "query", "schema": {"type": kind}}
    if kind == "date-time":
        param["schema"] = {"type": "string", "format": "date-time"}
    if desc:
        param["description"] = desc
    return param


def _body(model: type[BaseModel]) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"required": True, "content": {"application/json": {"schema": ref}}}


_OK = {"200": {"description": "OK"}}
# Operations that need no token (hub/web/auth.py PUBLIC_PATHS).
_PUBLIC = {("post", "/api/v1/auth/token"), ("get", "/api/v1/openapi.json")}
_ERRORS = {
    code: {
        "description": text,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    for code, text in {
        "400": "malformed request",
        "401": "missing or invalid token",
        "403": "your role may not do this",
        "404": "not found, or not visible to your teams",
        "409": "conflicts with existing data",
        "413": "body too large",
        "415": "body is not JSON",
        "422": "body failed validation",
        "429": "too many failed logins; wait Retry-After seconds",
        "503": "database busy or unreachable, or the ingest queue is full; retry after "
        "Retry-After seconds",
    }.items()
}

# (method, path, summary, parameters, body model, success status)
Operation = tuple[str, str, str, list[dict[str, Any]], type[BaseModel] | None, str]
OPERATIONS: list[Operation] = [
    ("get", "/healthz", "Process is up", [], None, "200"),
    ("get", "/readyz", "Database is reachable", [], None, "200"),
    ("get", "/api/v1/openapi.json", "This document", [], None, "200"),
    (
        "post",
        "/api/v1/auth/token",
        "Log in with username and password; returns a new API token",
        [],
        LoginIn,
        "201",
    ),
    (
        "delete",
        "/api/v1/auth/token",
        "Log out: the token of this request stops working",
        [],
        None,
        "204",
    ),
    (
        "get",
        "/api/v1/customers",
        "List customers of your teams",
        [
            _q("q", desc="text in name or company"),
            _q("postal_code", desc="prefix"),
            _q("city"),
            _q("country"),
            _q("industry"),
            {
                "name": "tag",
                "in": "query",
                "schema": {"type": "array", "items": {"type": "string"}},
                "style": "form",
                "explode": True,
                "description": "repeat for customers with every one of the tags",
            },
            _q("owner_id", "integer"),
            _q("team_id", "integer"),
            _q("kind", desc="lead or customer"),
            _q("last_contact_before", "date-time"),
            _q("last_contact_after", "date-time"),
            *PAGING,
        ],
        None,
        "200",
    ),
    ("post", "/api/v1/customers", "Create a customer", [], CustomerIn, "201"),
    (
        "get",
        "/api/v1/customers/{id}",
        "Read a customer (308 to the survivor if merged)",
        [ID],
        None,
        "200",
    ),
    ("patch", "/api/v1/customers/{id}", "Change fields of a customer", [ID], CustomerPatch, "200"),
    ("delete", "/api/v1/customers/{id}", "Erase a customer and their history", [ID], None, "204"),
    (
        "get",
        "/api/v1/customers/{id}/timeline",
        "History, newest first, all channels",
        [ID, *PAGING],
        None,
        "200",
    ),
    (
        "post",
        "/api/v1/customers/{id}/consent",
        "Record an opt-in or opt-out with its source (channel, purpose, state)",
        [ID],
        ConsentIn,
        "201",
    ),
    (
        "post",
        "/api/v1/customers/{id}/notes",
        "Add an internal note to the history",
        [ID],
        NoteIn,
        "201",
    ),
    (
        "post",
        "/api/v1/customers/{id}/merge/{other}",
        "Merge customer `other` into `id`",
        [ID, {"name": "other", "in": "path", "required": True, "schema": ID_SCHEMA}],
        None,
        "200",
    ),
    (
        "get",
        "/api/v1/lookup",
        "The caller card for a phone number or email address (screen pop; an unencoded + works)",
        [_q("phone"), _q("email")],
        None,
        "200",
    ),
    (
        "get",
        "/api/v1/conversations",
        "List conversations",
        [
            _q("customer_id", "integer"),
            _q("channel"),
            _q("status"),
            _q("assignee_id", "integer"),
            _q("team_id", "integer"),
            *PAGING,
        ],
        None,
        "200",
    ),
    (
        "get",
        "/api/v1/conversations/{id}",
        "A conversation with its interactions",
        [ID],
        None,
        "200",
    ),
    (
        "patch",
        "/api/v1/conversations/{id}",
        "Change status or assignee",
        [ID],
        ConversationPatch,
        "200",
    ),
    (
        "post",
        "/api/v1/conversations/{id}/reply",
        "Reply on the conversation's channel (SMS or email): 202 queued, the interaction "
        "with delivery_status queued (email: subject and Message-ID as provider_id); "
        "422 if the channel cannot send it (no sender, body too long, subject on SMS); "
        "409 if the customer opted out of SMS or their only email address bounced. "
        "Email goes out through the mailbox the conversation came in on, to the address "
        "the customer last wrote from, threaded (In-Reply-To/References); `subject` "
        "(email only) replaces 'Re: <conversation subject>'",
        [ID],
        ReplyBody,
        "202",
    ),
    (
        "get",
        "/api/v1/tasks",
        "List tasks",
        [
            _q("customer_id", "integer"),
            _q("assignee_id", "integer"),
            _q("done", "boolean"),
            _q("due_before", "date-time"),
            *PAGING,
        ],
        None,
        "200",
    ),
    ("post", "/api/v1/tasks", "Create a follow-up task", [], TaskIn, "201"),
    (
        "get",
        "/api/v1/events",
        "The live event stream (websocket): bearer header, or a first frame "
        '{"token": ..., "last_event_id": N}; frames {"id", "kind", "data"}',
        [_q("last_event_id", "integer", "replay what came after this id, then go live")],
        None,
        "101",
    ),
    ("get", "/api/v1/me/status", "Your presence: available or away, and online", [], None, "200"),
    (
        "put",
        "/api/v1/me/status",
        "Set your presence (away: no new calls or conversations are assigned to you)",
        [],
        StatusIn,
        "200",
    ),
    (
        "get",
        "/api/v1/identity-claims",
        "Identities given for your teams' customers that another team's customer holds "
        "(supervisors; admins also see the holder)",
        [],
        None,
        "200",
    ),
    (
        "delete",
        "/api/v1/identity-claims/{id}",
        "Drop an identity claim (the identity stays with its holder)",
        [ID],
        None,
        "204",
    ),
    (
        "get",
        "/api/v1/customers/{id}/export",
        "Subject access export (admins): a zip with data.json and the attachments",
        [ID],
        None,
        "200",
    ),
    (
        "post",
        "/api/v1/customers/{id}/erase",
        "Erase a customer for good (admins); keeps keyed hashes of opted-out identities; "
        "409 when privacy.suppression_key is not set",
        [ID],
        None,
        "200",
    ),
    (
        "get",
        "/api/v1/audit",
        "The audit log (admins): who read, changed, exported or erased what, from where",
        [
            _q("user_id", "integer"),
            _q("customer_id", "integer", "entries about this customer"),
            _q(
                "action",
                desc="read, search, create, change, delete, login, login_failed, "
                "export, subject_export, erase, ...",
            ),
            _q("since", "date-time"),
            _q("until", "date-time"),
            *PAGING,
        ],
        None,
        "200",
    ),
    ("get", "/api/v1/tasks/{id}", "Read a task", [ID], None, "200"),
    ("patch", "/api/v1/tasks/{id}", "Change a task", [ID], TaskPatch, "200"),
    ("delete", "/api/v1/tasks/{id}", "Delete a task", [ID], None, "204"),
    (
        "post",
        "/api/v1/calls",
        "Click-to-dial: ring the asking agent (Twilio client or PBX extension) and bridge "
        "them to the customer (customer_id: their first phone number) or a number; 201 "
        "with provider and call_id, logged in the history like any call; 404 for a customer "
        "you may not see, 409 if they opted out of phone contact or were erased after "
        "opting out, 502 if the provider refused",
        [],
        CallIn,
        "201",
    ),
    *consent_api.OPERATIONS,
    *segments_api.OPERATIONS,
    *campaigns_api.OPERATIONS,
    *templates_api.OPERATIONS,
]


def webhook_operations(configs: ChannelConfigs) -> list[Operation]:
    """The channels' webhooks, described by the registry (their parsers answer 2xx on success)."""
    ops: list[Operation] = []
    for _channel, hook in registry.webhooks(configs):
        ok = str(hook.answer([]).status)
        query = [
            {"name": name, "in": "query", "schema": dict(schema)}
            for name, schema in hook.fields.query.items()
        ]
        ops.append(("post", hook.path, hook.summary, query, None, ok))
    return ops


def _webhook_forms(configs: ChannelConfigs) -> dict[str, dict[str, Any]]:
    """path -> the form body each webhook reads (providers post form-encoded fields)."""
    forms = {}
    for _channel, hook in registry.webhooks(configs):
        schema = {
            "type": "object",
            "properties": {name: dict(field) for name, field in hook.fields.form.items()},
            "required": list(hook.fields.required),
        }
        forms[hook.path] = {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": schema}},
        }
    return forms


def build_document(version: str, configs: ChannelConfigs) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["error", "detail"],
            "properties": {"error": {"type": "string"}, "detail": {}},
        }
    }
    forms = _webhook_forms(configs)
    for method, path, summary, params, body, ok in [*OPERATIONS, *webhook_operations(configs)]:
        op: dict[str, Any] = {
            "summary": summary,
            "parameters": params,
            "responses": {ok: {"description": "success"}, **_ERRORS},
        }
        if path.startswith("/api/v1/") and (method, path) not in _PUBLIC:
            op["security"] = [{"bearer": []}]
        if path in forms:
            op["requestBody"] = forms[path]
        if body is not None:
            op["requestBody"] = _body(body)
            schemas[body.__name__] = body.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "crmhub API", "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
