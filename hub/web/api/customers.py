"""/api/v1/customers, timeline, notes, merge and lookup."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy import Row

from hub.records.access import Action, require
from hub.records.consent import consent_in_force, record_consent
from hub.records.customers import CustomerFilter, CustomerStore
from hub.records.history import HistoryStore
from hub.records.lookup import caller_card, query_phone
from hub.records.merge import merge_customers
from hub.records.schemas import ConsentIn, CustomerIn, CustomerPatch, NoteIn
from hub.store.models import Customer, CustomerKind
from hub.web.auth import HUB, principal_of
from hub.web.errors import ApiError
from hub.web.params import (
    as_id,
    decode_cursor,
    id_cursor,
    page_response,
    path_int,
    query_int,
    query_limit,
    query_time,
    read_body,
)
from hub.web.serialize import customer_json, interaction_json

routes = web.RouteTableDef()


def _region(request: web.Request) -> str:
    return request.app[HUB].settings.identity.default_region


def _limit(request: web.Request) -> int:
    api = request.app[HUB].settings.api
    return query_limit(request, api.page_size, api.max_page_size)


async def _render(
    store: CustomerStore, customers: Sequence[Customer | Row[Any]]
) -> list[dict[str, Any]]:
    ids = [c.id for c in customers if c.id is not None]
    identities, tags = await store.details(ids)
    consent = await consent_in_force(await store.s.connection(), ids)
    return [
        {
            **customer_json(c, identities.get(c.id or 0, []), tags.get(c.id or 0, [])),
            "consent": consent.get(c.id or 0, []),
        }
        for c in customers
    ]


@routes.get("/api/v1/customers")
async def list_customers(request: web.Request) -> web.Response:
    q = request.query
    kind = q.get("kind") or None
    if kind is not None and kind not in {k.value for k in CustomerKind}:
        raise ApiError(400, "kind must be lead or customer")
    flt = CustomerFilter(
        q=q.get("q") or None,
        postal_code=q.get("postal_code") or None,
        city=q.get("city") or None,
        country=q.get("country") or None,
        industry=q.get("industry") or None,
        tags=tuple(t for t in q.getall("tag", []) if t),
        owner_id=query_int(request, "owner_id"),
        team_id=query_int(request, "team_id"),
        kind=kind,
        last_contact_before=query_time(request, "last_contact_before"),
        last_contact_after=query_time(request, "last_contact_after"),
    )
    cursor = id_cursor(request)
    async with request.app[HUB].db.read() as s:
        store = CustomerStore(s, principal_of(request), _region(request))
        page, next_after = await store.search(flt, cursor, _limit(request))
        items = await _render(store, page)
    return page_response(items, next_after)


@routes.post("/api/v1/customers")
async def create_customer(request: web.Request) -> web.Response:
    body = await read_body(request, CustomerIn)
    hub = request.app[HUB]
    async with hub.db.write() as s:
        store = CustomerStore(s, principal_of(request), _region(request))
        customer = await store.create(body, hub.teams.default_team_id)
        (item,) = await _render(store, [customer])
    return web.json_response(
        item, status=201, headers={"Location": f"/api/v1/customers/{item['id']}"}
    )


@routes.get("/api/v1/customers/{id}")
async def get_customer(request: web.Request) -> web.Response:
    async with request.app[HUB].db.read() as s:
        store = CustomerStore(s, principal_of(request), _region(request))
        (item,) = await _render(store, [await store.get(path_int(request))])
    return web.json_response(item)


@routes.patch("/api/v1/customers/{id}")
async def update_customer(request: web.Request) -> web.Response:
    body = await read_body(request, CustomerPatch)
    async with request.app[HUB].db.write() as s:
        store = CustomerStore(s, principal_of(request), _region(request))
        (item,) = await _render(store, [await store.update(path_int(request), body)])
    return web.json_response(item)


@routes.delete("/api/v1/customers/{id}")
async def delete_customer(request: web.Request) -> web.Response:
    async with request.app[HUB].db.write() as s:
        await CustomerStore(s, principal_of(request), _region(request)).delete(path_int(request))
    return web.Response(status=204)


@routes.get("/api/v1/customers/{id}/timeline")
async def timeline(request: web.Request) -> web.Response:
    cursor = decode_cursor(request)
    before: tuple[datetime, int] | None = None
    if cursor is not None:
        try:
            at = datetime.fromisoformat(cursor[0])
        except (TypeError, ValueError, IndexError, KeyError):
            raise ApiError(400, "cursor is not one this API handed out") from None
        if at.tzinfo is None or len(cursor) != 2:
            raise ApiError(400, "cursor is not one this API handed out")
        before = (at, as_id("cursor", cursor[1]))
    async with request.app[HUB].db.read() as s:
        history = HistoryStore(s, principal_of(request), _region(request))
        page, nxt = await history.timeline(path_int(request), before, _limit(request))
    return page_response(
        [interaction_json(i) for i in page], [nxt[0].isoformat(), nxt[1]] if nxt else None
    )


@routes.post("/api/v1/customers/{id}/notes")
async def add_note(request: web.Request) -> web.Response:
    body = await read_body(request, NoteIn)
    async with request.app[HUB].db.write() as s:
        history = HistoryStore(s, principal_of(request), _region(request))
        note = await history.add_note(path_int(request), body.text)
    return web.json_response(interaction_json(note), status=201)


@routes.post("/api/v1/customers/{id}/merge/{other}")
async def merge(request: web.Request) -> web.Response:
    keep_id, other_id = path_int(request), path_int(request, "other")
    async with request.app[HUB].db.write() as s:
        kept = await merge_customers(s, principal_of(request), _region(request), keep_id, other_id)
        store = CustomerStore(s, principal_of(request), _region(request))
        (item,) = await _render(store, [kept])
    return web.json_response(item)


@routes.get("/api/v1/lookup")
async def lookup(request: web.Request) -> web.Response:
    """The caller card (hub/records/lookup.py): the same shape a call.ringing pop carries."""
    async with request.app[HUB].db.read() as s:
        card = await caller_card(
            await s.connection(),
            principal_of(request),
            region=_region(request),
            phone=query_phone(request.query.get("phone")),
            email=request.query.get("email"),
        )
    return web.json_response(card)


@routes.post("/api/v1/customers/{id}/consent")
async def add_consent(request: web.Request) -> web.Response:
    """Record an opt-in or opt-out with its source; answers the customer's consent in force."""
    body = await read_body(request, ConsentIn)
    async with request.app[HUB].db.write() as s:
        store = CustomerStore(s, principal_of(request), _region(request))
        require(store.p, Action.WRITE_CUSTOMER)
        customer = await store.get(path_int(request))
        assert customer.id is not None
        conn = await s.connection()
        await record_consent(conn, customer.id, body.channel, body.purpose, body.state, body.source)
        consent = await consent_in_force(conn, [customer.id])
    return web.json_response(
        {"customer_id": customer.id, "consent": consent.get(customer.id, [])}, status=201
    )
