"""GET /api/v1/events (websocket): the live event stream; PUT/GET /api/v1/me/status.

Authentication: `Authorization: Bearer <token>` on the upgrade request, or,
for browsers (which cannot set headers on a websocket), a first frame
`{"token": "...", "last_event_id": N}` within 10 s. A client that
reconnects passes the last id it saw (`?last_event_id=` or in that frame)
and first gets what it missed, then live events. Frames: `{"id": 17,
"kind": "interaction.created", "data": {...}}`; see README for each kind.
A live connection with status "available" is what makes an agent online
for assignment (hub/events/presence.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiohttp import WSMsgType, web

from hub.errors import DomainError
from hub.events.clients import Client, Frame
from hub.events.presence import Status
from hub.records.auth import Principal, authenticate_token
from hub.records.lookup import caller_card
from hub.records.schemas import StatusIn
from hub.runtime import Hub
from hub.web.auth import HUB, PRINCIPAL, principal_of
from hub.web.errors import ApiError
from hub.web.params import read_body

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

FIRST_FRAME_SECONDS = 10.0
# Closed with these codes (RFC 6455 private range): a client can tell why.
CLOSE_UNAUTHORIZED = 4401
CLOSE_BAD_REQUEST = 4400
# The kind string, not an import: the telephony events are defined in kinds.py by issue 10's
# voice part; the stream only needs to recognise the pop.
CALL_RINGING = "call.ringing"


def _last_id(raw: Any) -> int:
    if raw is None or raw == "":
        return 0
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        return raw
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) < 19:
        return int(raw)
    raise ValueError("last_event_id must be a non-negative integer")


async def _first_frame(request: web.Request, ws: web.WebSocketResponse) -> tuple[Principal, int]:
    hub = request.app[HUB]
    try:
        msg = await ws.receive(timeout=FIRST_FRAME_SECONDS)
    except TimeoutError:
        raise ValueError("no token frame within 10 s") from None
    if msg.type != WSMsgType.TEXT:
        raise ValueError('the first frame must be {"token": "..."}')
    try:
        data = json.loads(msg.data)
    except ValueError:
        raise ValueError('the first frame must be {"token": "..."}') from None
    if not isinstance(data, dict) or not isinstance(data.get("token"), str):
        raise ValueError('the first frame must be {"token": "..."}')
    principal = await authenticate_token(
        hub.db, data["token"], idle_days=hub.settings.auth.token_idle_days
    )
    if principal is None:
        raise PermissionError("invalid, expired or revoked token")
    return principal, _last_id(data.get("last_event_id"))


@routes.get("/api/v1/events")
async def events(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    principal: Principal | None = request.get(PRINCIPAL)
    try:
        after = _last_id(request.query.get("last_event_id"))
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    ws = web.WebSocketResponse(heartbeat=30.0)
    if not ws.can_prepare(request).ok:
        raise ApiError(400, "this is a websocket: connect with Upgrade: websocket")
    await ws.prepare(request)
    if principal is None:
        try:
            principal, given = await _first_frame(request, ws)
            after = given or after
        except PermissionError as exc:
            await ws.close(code=CLOSE_UNAUTHORIZED, message=str(exc).encode())
            return ws
        except ValueError as exc:
            await ws.close(code=CLOSE_BAD_REQUEST, message=str(exc).encode())
            return ws
    client = Client(principal, hub.settings.events.client_queue)
    hub.events.clients.add(client)  # before the replay: nothing falls between the two
    hub.presence.connected(principal.user_id)
    reader = asyncio.create_task(_drain_incoming(ws))
    try:
        sent = after
        if after:
            for frame in await hub.events.replay(principal, after):
                await ws.send_str(await _outgoing(hub, principal, frame))
                sent = frame.id or sent
        while not ws.closed:
            if client.queue.empty():
                # Wait for a frame or the client going away; only then a task per wait,
                # since frames that are already queued need none.
                getter = asyncio.ensure_future(client.queue.get())
                done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    break
                frame = getter.result()
            elif reader.done():
                break
            else:
                frame = client.queue.get_nowait()
            if client.dropped:
                lost = {"id": None, "kind": "bus.overflow", "data": {"dropped": client.dropped}}
                await ws.send_json(lost)
                client.dropped = 0
            if frame.id is not None and frame.id <= sent:
                continue  # already sent by the replay
            await ws.send_str(await _outgoing(hub, principal, frame))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        hub.events.clients.discard(client)
        hub.presence.disconnected(principal.user_id)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        await ws.close()
    return ws


async def _outgoing(hub: Hub, principal: Principal, frame: Frame) -> str:
    """A `call.ringing` pop gets the caller card built for this recipient (their
    teams decide known / other_team); every other frame goes out as stored.

    The card is built once per frame and kind of recipient, not per client: a
    pop that rings four agents of one team reads the database once.
    """
    if frame.kind != CALL_RINGING:
        return frame.text
    raw_id = frame.data.get("customer_id")
    customer_id = raw_id if isinstance(raw_id, int) else None
    if customer_id is not None:
        # The frame's team is the customer's: it decides known / other_team alone.
        key: Any = principal.is_admin or frame.team_id in principal.team_ids
    else:
        key = (principal.is_admin, principal.team_ids)  # identity claims depend on the teams
    pending = frame.cache.get(key)
    if isinstance(pending, str):
        return pending  # rendered ahead by the stream (hub/events/pops.py)
    if pending is None:
        pending = frame.cache[key] = asyncio.ensure_future(
            _pop_text(hub, principal, frame, customer_id)
        )
    return str(await asyncio.shield(pending))


async def _pop_text(hub: Hub, principal: Principal, frame: Frame, customer_id: int | None) -> str:
    body = frame.json()
    data = dict(frame.data)
    number = data.get("from")
    try:
        async with hub.db.read() as s:
            data["caller"] = await caller_card(
                await s.connection(),
                principal,
                region=hub.settings.identity.default_region,
                phone=number if isinstance(number, str) and number else None,
                customer_id=customer_id,
            )
    except DomainError:
        # Withheld or unusable number: the pop still goes out, as an unknown caller.
        data["caller"] = {"status": "unknown", "phone": number}
    body["data"] = data
    return json.dumps(body)


async def _drain_incoming(ws: web.WebSocketResponse) -> None:
    """Read (and ignore) what the client sends, so pings and the close are seen."""
    async for _msg in ws:
        pass


@routes.get("/api/v1/me/status")
async def get_status(request: web.Request) -> web.Response:
    principal = principal_of(request)
    presence = request.app[HUB].presence
    return web.json_response(
        {
            "user_id": principal.user_id,
            "status": presence.status(principal.user_id).value,
            "online": presence.is_online(principal.user_id),
        }
    )


@routes.put("/api/v1/me/status")
async def put_status(request: web.Request) -> web.Response:
    body = await read_body(request, StatusIn)
    principal = principal_of(request)
    presence = request.app[HUB].presence
    presence.set_status(principal.user_id, Status(body.status))
    return web.json_response(
        {
            "user_id": principal.user_id,
            "status": body.status,
            "online": presence.is_online(principal.user_id),
        }
    )
