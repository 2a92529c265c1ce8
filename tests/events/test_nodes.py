"""Two `crmhub serve` processes on one PostgreSQL: a webhook on one pops on the other."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]
import pytest

from hub.events.bus import Event, EventBus
from hub.events.pg_fanout import CHANNEL, _dsn
from hub.events.stream import Client, EventStream
from hub.records.auth import Principal, create_user, issue_token
from hub.store.db import Database
from hub.store.models import Role
from tests.support.sms import signature_of, twilio_form

pytestmark = pytest.mark.db

TOKEN = "node-test-token"
PBX_TOKEN = "node-pbx-token"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def nodes(db_url: str, db: Database, tmp_path: Path) -> Iterator[list[int]]:
    if db.sqlite:
        pytest.skip("SQLite is one node; LISTEN/NOTIFY is PostgreSQL's")
    ports = [_port(), _port()]
    procs = []
    for n, port in enumerate(ports):
        cfg = tmp_path / f"node{n}.yaml"
        cfg.write_text(
            f"database:\n  url: {db_url}\nserver:\n  access_log: false\n"
            f"sms:\n  enabled: true\n  public_url: http://127.0.0.1:{ports[0]}\n"
            "voice:\n  pbx:\n    enabled: true\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRMHUB_")}
        env["CRMHUB_SMS__AUTH_TOKEN"] = TOKEN
        env["CRMHUB_VOICE__PBX__TOKEN"] = PBX_TOKEN
        crmhub = str(Path(sys.executable).parent / "crmhub")
        proc = subprocess.Popen(
            [crmhub, "-c", str(cfg), "serve", "--port", str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("crmhub serving on"), line
    try:
        yield ports
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)


async def test_a_webhook_on_node_a_reaches_a_client_of_node_b(
    nodes: list[int], db: Database
) -> None:
    await create_user(db, "watcher", role=Role.ADMIN, teams=[], password_cost=12)
    token = await issue_token(db, "watcher")
    a, b = nodes
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(
            f"http://127.0.0.1:{b}/api/v1/events", headers={"Authorization": f"Bearer {token}"}
        )
        form = twilio_form("SMnodeAB", "über Knoten A")
        url = f"http://127.0.0.1:{a}/webhooks/twilio/sms"
        signed = {"X-Twilio-Signature": signature_of(form, url, TOKEN)}
        async with http.post(url, data=form, headers=signed) as resp:
            assert resp.status == 200
        msg: Any = await ws.receive(timeout=15)
        frame = msg.json()
        assert frame["kind"] == "interaction.created"
        assert frame["data"]["sender"] == "+4917155500001"
        await ws.close()


async def test_a_call_on_node_a_pops_at_the_ringing_agent_on_node_b_only(
    nodes: list[int], db: Database
) -> None:
    """Issue 10: two `crmhub serve` processes; a PBX newCall posted to A rings agent
    "anna" (Support), whose websocket is on B: the pop, with the caller card, arrives
    there; "bert" (Support, connected to B, not ringing) gets no pop."""
    await create_user(db, "anna", role=Role.AGENT, teams=["Support"], password_cost=12)
    await create_user(db, "bert", role=Role.AGENT, teams=["Support"], password_cost=12)
    tokens = {u: await issue_token(db, u) for u in ("anna", "bert")}
    a, b = nodes
    async with aiohttp.ClientSession() as http:
        sockets = {
            u: await http.ws_connect(
                f"http://127.0.0.1:{b}/api/v1/events",
                headers={"Authorization": f"Bearer {tokens[u]}"},
            )
            for u in tokens
        }
        call = {
            "event": "newCall", "callId": "node-pop-1", "from": "+4917155500077",
            "to": "+49305550100", "direction": "in", "user": ["anna"],
        }  # fmt: skip
        async with http.post(f"http://127.0.0.1:{a}/webhooks/cti/{PBX_TOKEN}", json=call) as r:
            assert r.status == 200, await r.text()
        seen = []
        while True:
            frame = (await sockets["anna"].receive(timeout=15)).json()
            seen.append(frame["kind"])
            if frame["kind"] == "call.ringing":
                break
        assert frame["data"]["call_id"] == "node-pop-1"
        assert frame["data"]["caller"]["status"] == "known"  # the new lead, of Support
        assert frame["data"]["caller"]["phone"] == "+4917155500077"
        # bert gets the team's history events, never anna's pop: the first call frame
        # he sees is the pop of a second call, which rings him.
        marker = {**call, "callId": "node-pop-2", "from": "+4917155500078", "user": ["bert"]}
        async with http.post(f"http://127.0.0.1:{a}/webhooks/cti/{PBX_TOKEN}", json=marker) as r:
            assert r.status == 200, await r.text()
        while True:
            frame = (await sockets["bert"].receive(timeout=15)).json()
            assert frame["kind"] in ("interaction.created", "call.ringing"), frame
            if frame["kind"] == "call.ringing":
                break
        assert frame["data"]["call_id"] == "node-pop-2"
        for ws in sockets.values():
            await ws.close()


@contextlib.asynccontextmanager
async def _two_streams(
    db: Database, db_url: str
) -> AsyncIterator[tuple[list[EventBus], list[Client], list[dict[str, Any]]]]:
    """Two streams (two nodes' worth) on one database, an admin client on each, and
    every NOTIFY payload on the channel as a spy connection saw it."""
    if db.sqlite:
        pytest.skip("SQLite is one node; LISTEN/NOTIFY is PostgreSQL's")
    seen: list[dict[str, Any]] = []
    spy = await asyncpg.connect(_dsn(db_url))
    await spy.add_listener(CHANNEL, lambda *args: seen.append(json.loads(args[3])))
    admin = Principal(1, "admin", Role.ADMIN, frozenset())
    buses = [EventBus(), EventBus()]
    streams = [EventStream(db, bus, keep=1000, keep_hours=1) for bus in buses]
    clients = [Client(admin, 100), Client(admin, 100)]
    for stream, client in zip(streams, clients, strict=True):
        stream.clients.add(client)
        await stream.start()
    try:
        yield buses, clients, seen
    finally:
        for stream in streams:
            await stream.stop()
        await spy.close()


async def test_small_batches_travel_inline_and_big_ones_by_id(db: Database, db_url: str) -> None:
    """A small event crosses in the NOTIFY payload, one over the 8,000-byte limit as
    its id; each arrives once."""
    async with _two_streams(db, db_url) as (buses, clients, seen):
        buses[0].publish(Event("test.small", {"n": 1}))
        small = await asyncio.wait_for(clients[1].queue.get(), 15)
        big_data = {"blob": "x" * 10_000}
        buses[0].publish(Event("test.big", big_data))
        big = await asyncio.wait_for(clients[1].queue.get(), 15)
        assert (small.kind, small.data, big.kind, big.data) == (
            "test.small",
            {"n": 1},
            "test.big",
            big_data,
        )
        assert small.id is not None and big.id is not None and small.id < big.id
        assert [("events" in p, "ids" in p) for p in seen] == [(True, False), (False, True)]
        assert seen[1]["ids"] == [big.id]
        # Node A delivered its own events once, locally; node B got nothing twice.
        local = [clients[0].queue.get_nowait().id for _ in range(clients[0].queue.qsize())]
        assert (local, clients[1].queue.qsize()) == ([small.id, big.id], 0)


async def test_a_burst_crosses_in_several_payloads_in_order(db: Database, db_url: str) -> None:
    """60 events of ~400 bytes published at once: several NOTIFY payloads, sent in one
    statement; the other node gets each event once, in the order they were numbered."""
    async with _two_streams(db, db_url) as (buses, clients, seen):
        for n in range(60):
            buses[0].publish(Event("test.burst", {"n": n, "pad": "y" * 400}))
        got = [await asyncio.wait_for(clients[1].queue.get(), 15) for _ in range(60)]
        assert [f.data["n"] for f in got] == list(range(60))
        ids = [f.id or 0 for f in got]
        assert all(ids) and ids == sorted(ids)
        await asyncio.sleep(0.2)  # nothing more arrives
        assert clients[1].queue.qsize() == 0
        inline = [e["data"]["n"] for p in seen for e in p.get("events", [])]
        assert inline == list(range(60)) and len(seen) >= 3
