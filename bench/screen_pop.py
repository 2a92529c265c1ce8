"""Screen-pop latency: signed webhook sent → event frame received by the agents' websockets.

Seeds N customers (bench/seed.py: 4 teams, customers spread over them) into a
fresh database, adds `--agents` agents (200) spread over the 4 teams with an
API token each, starts `crmhub serve` (one node, or two on PostgreSQL with
`--nodes 2`), then a separate load process that opens one websocket per agent
(`/api/v1/events`, alternating between the nodes) and posts signed Twilio
inbound-SMS webhooks at a steady rate (open loop: request i leaves at t0 +
i/rate, whatever the answers do), each from a different seeded customer.

`--via pbx` (the default): generic PBX `newCall` webhooks
(`POST /webhooks/cti/{token}`, JSON) naming `--ring` agents of the caller's
team (4: a ring group; 0: the PBX names nobody and the pop goes to the team's
online agents, ~50). Timed to each ringing agent's `call.ringing` frame (the
pop, with its caller card). `--via sms`: signed Twilio inbound-SMS webhooks,
timed to `interaction.created` at every agent of the customer's team (~50).
Per rate step it prints p50/p99/max from the request sent to each agent's
frame received, and the highest rate whose p99 stays under the goal (50 ms
on one node, 100 ms on two; every webhook answered 200, every frame arrived).

    .venv/bin/python bench/screen_pop.py                              # 1 M customers, SQLite
    .venv/bin/python bench/screen_pop.py --customers 100000 --rates 50,100,200
    .venv/bin/python bench/screen_pop.py --nodes 2 \
        --db postgresql+asyncpg://postgres@127.0.0.1:5432/postgres

A benchmark, not a test: it asserts nothing about the figures. Children are
terminated and the database removed on exit (`--keep` keeps it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if not __package__:  # run as `python bench/screen_pop.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.seed import TEAMS, customer_phone, log, seed
from bench.sms_load import ACCOUNT_SID, HOST, TOKEN_ENV
from bench.sms_webhook import Children, free_port, profiling, wait_ready
from bench.stats import pct
from bench.target import prepare_target
from hub.store.db import is_sqlite

VENV_BIN = Path(sys.executable).parent
GOAL_MS = {1: 50.0, 2: 100.0}  # by number of nodes
PBX_TOKEN_ENV = "CRMHUB_VOICE__PBX__TOKEN"


# --- setup -------------------------------------------------------------------------------------


async def make_agents(url: str, n: int) -> list[str]:
    from hub.config import DatabaseConfig
    from hub.records.auth import create_user, issue_token
    from hub.store.db import Database
    from hub.store.models import Role

    db = Database(DatabaseConfig(url=url))
    tokens = []
    try:
        for i in range(n):
            name = f"pop{i}"
            await create_user(db, name, role=Role.AGENT, teams=[TEAMS[i % len(TEAMS)]])
            tokens.append(await issue_token(db, name))
    finally:
        await db.close()
    return tokens


def start_nodes(
    children: Children, url: str, nodes: int, env: dict[str, str], tmp: Path
) -> tuple[list[int], list[int]]:
    ports = [free_port() for _ in range(nodes)]
    pids = []
    for n, port in enumerate(ports):
        cfg = tmp / f"node{n}.yaml"
        cfg.write_text(
            json.dumps(
                {
                    "database": {"url": url},
                    "server": {"host": HOST, "port": port, "access_log": False},
                    # Webhooks go to node 0; its URL is what Twilio signs.
                    "sms": {"enabled": True, "public_url": f"http://{HOST}:{ports[0]}"},
                    "voice": {"pbx": {"enabled": True}},
                }
            ),
            encoding="utf-8",
        )
        log_path = tmp / f"node{n}.log"
        cmd = [str(VENV_BIN / "crmhub"), "-c", str(cfg), "serve", "--port", str(port)]
        proc = children.start(cmd, env, log_path)
        wait_ready(proc, port, log_path, f"crmhub serve node {n}")
        log(f"node {n}: pid {proc.pid}, port {port}")
        pids.append(proc.pid)
    return ports, pids


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the load process --------------------------------------------------------------------------


def _form(sender: str, rng: random.Random) -> dict[str, str]:
    sid = "SM" + secrets.token_hex(16)
    return {
        "ToCountry": "DE", "SmsMessageSid": sid, "NumMedia": "0", "SmsSid": sid,
        "SmsStatus": "received", "Body": "Rufen Sie mich bitte zurück", "To": "+49305550100",
        "NumSegments": "1", "MessageSid": sid, "AccountSid": ACCOUNT_SID, "From": sender,
        "FromCountry": "DE", "ApiVersion": "2010-04-01",
    }  # fmt: skip


def _ring(customer: int, agents: int, ring: int, call: int) -> list[str]:
    """`ring` agents of the customer's team (agent j is in team j % 4, customer i in i % 4)."""
    team = customer % len(TEAMS)
    members = list(range(team, agents, len(TEAMS)))
    start = (call * ring) % len(members)
    return [f"pop{members[(start + k) % len(members)]}" for k in range(ring)]


async def load(args: argparse.Namespace) -> dict[str, Any]:
    import aiohttp
    from twilio.request_validator import RequestValidator

    tokens: list[str] = json.loads(Path(args.tokens_file).read_text())  # noqa: ASYNC240
    ports: list[int] = args.ports
    pbx = args.via == "pbx"
    if pbx:
        hook = f"http://{HOST}:{ports[0]}/webhooks/cti/{os.environ[PBX_TOKEN_ENV]}"
        watched = "call.ringing"
    else:
        hook = f"http://{HOST}:{ports[0]}/webhooks/twilio/sms"
        watched = "interaction.created"
    validator = RequestValidator(os.environ[TOKEN_ENV])
    sent_at: dict[str, float] = {}
    latencies: list[float] = []  # (seconds) per frame, current step
    cross: list[float] = []  # frames received on another node than the webhook's
    answers: list[float] = []  # webhook request sent -> its answer received
    received = 0

    async def agent(ws: Any, node: int) -> None:
        nonlocal received
        async for msg in ws:
            now = time.perf_counter()
            frame = json.loads(msg.data)
            if frame["kind"] != watched:
                continue
            t = sent_at.get(frame["data"]["call_id"] if pbx else frame["data"]["sender"])
            if t is not None:
                received += 1
                latencies.append(now - t)
                if node:
                    cross.append(now - t)

    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
    sockets = []
    for i, token in enumerate(tokens):
        node = i % len(ports)
        ws = await http.ws_connect(
            f"http://{HOST}:{ports[node]}/api/v1/events",
            headers={"Authorization": f"Bearer {token}"},
            heartbeat=None,
        )
        sockets.append(asyncio.create_task(agent(ws, node)))
    log(f"{len(tokens)} agents connected")
    rng = random.Random(11)
    senders = iter(rng.sample(range(1, args.customers + 1), min(args.customers, 2_000_000)))
    per_team = len(tokens) // len(TEAMS)
    per_call = args.ring if pbx and args.ring else per_team
    calls = 0
    steps = []
    # The first step is a warm-up (connections, caches, the JIT-less first calls): not reported.
    for rate in [args.rates[0], *args.rates]:
        latencies.clear()
        cross.clear()
        answers.clear()
        received = 0
        statuses: dict[int, int] = {}
        n = int(rate * args.seconds)

        async def post(form: dict[str, Any], statuses: dict[int, int] = statuses) -> None:
            if pbx:
                sent_at[form["callId"]] = time.perf_counter()
                request = http.post(hook, json=form)
            else:
                headers = {"X-Twilio-Signature": validator.compute_signature(hook, form)}
                sent_at[form["From"]] = time.perf_counter()
                request = http.post(hook, data=form, headers=headers)
            key = form["callId"] if pbx else form["From"]
            try:
                async with request as resp:
                    await resp.read()
                    answers.append(time.perf_counter() - sent_at[key])
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1
            except aiohttp.ClientError:
                statuses[0] = statuses.get(0, 0) + 1

        forms: list[dict[str, Any]] = []
        for _ in range(n):
            customer = next(senders)
            if pbx:
                calls += 1
                forms.append(
                    {
                        "event": "newCall", "callId": f"bench-{calls}", "direction": "in",
                        "from": customer_phone(customer), "to": "+49305550100",
                        "user": _ring(customer, len(tokens), args.ring, calls) if args.ring else [],
                    }
                )  # fmt: skip
            else:
                forms.append(_form(customer_phone(customer), rng))
        t0 = time.perf_counter()
        posts = []
        for i, form in enumerate(forms):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            posts.append(asyncio.create_task(post(form)))
        await asyncio.gather(*posts)
        sending_s = time.perf_counter() - t0
        await asyncio.sleep(3)  # late frames still count
        lat = sorted(latencies)
        expected = n * per_call
        step = {
            "rate": rate,
            "webhooks": n,
            "achieved_rate": round(n / sending_s, 1),
            "statuses": statuses,
            "frames": received,
            "frames_expected": expected,
            "p50_ms": round(pct(lat, 50) * 1000, 2) if lat else None,
            "p99_ms": round(pct(lat, 99) * 1000, 2) if lat else None,
            "max_ms": round(lat[-1] * 1000, 2) if lat else None,
            "answer_p50_ms": round(pct(sorted(answers), 50) * 1000, 2) if answers else None,
            "answer_p99_ms": round(pct(sorted(answers), 99) * 1000, 2) if answers else None,
        }
        if len(ports) > 1 and cross:
            c = sorted(cross)
            step["other_node_p50_ms"] = round(pct(c, 50) * 1000, 2)
            step["other_node_p99_ms"] = round(pct(c, 99) * 1000, 2)
        log(json.dumps(step))
        steps.append(step)
    steps = steps[1:]
    for task in sockets:
        task.cancel()
    await http.close()
    return {"steps": steps}


def load_main(args: argparse.Namespace) -> int:
    print(json.dumps(asyncio.run(load(args))))
    return 0


# --- the orchestrator --------------------------------------------------------------------------


def sustained(steps: list[dict[str, Any]], goal: float) -> float | None:
    best = None
    for s in steps:
        ok = (
            s["p99_ms"] is not None
            and s["p99_ms"] < goal
            and s["statuses"] == {"200": s["webhooks"]}
            and s["frames"] >= s["frames_expected"]
            and s["achieved_rate"] >= 0.95 * s["rate"]
        )
        if ok:
            best = s["rate"]
    return best


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--customers", type=int, default=1_000_000)
    p.add_argument("--agents", type=int, default=200)
    p.add_argument("--rates", default="25,50,100,200", help="webhooks/s per step, comma-separated")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each step")
    p.add_argument(
        "--db", default=None, help="SQLite file or PostgreSQL server URL (default: temp SQLite)"
    )
    p.add_argument("--nodes", type=int, default=1, choices=(1, 2))
    p.add_argument("--via", choices=("pbx", "sms"), default="pbx", help="the webhook that pops")
    p.add_argument(
        "--ring", type=int, default=4, help="agents a PBX call names (0: the team's online agents)"
    )
    p.add_argument("--keep", action="store_true", help="keep the database")
    p.add_argument("--profile", help="py-spy node 0 into this file (raw collapsed stacks)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--ports", type=lambda s: [int(x) for x in s.split(",")], help=argparse.SUPPRESS)
    p.add_argument("--tokens-file", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.rates = [float(r) for r in str(args.rates).split(",")]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.load:
        return load_main(args)
    from hub.store.migrate import upgrade

    target = prepare_target(args.db, args.keep)
    if args.nodes > 1 and is_sqlite(target.url):
        target.cleanup()
        raise SystemExit("bench: --nodes 2 needs PostgreSQL (--db postgresql+asyncpg://…)")
    children = Children()
    tmp = Path(tempfile.mkdtemp(prefix="crmhub-pop-"))
    try:
        log(f"database: {target.where}")
        upgrade(target.url)
        log(f"seeding {args.customers:,} customers")
        seed(target.url, args.customers, 10)
        tokens = asyncio.run(make_agents(target.url, args.agents))
        tokens_file = tmp / "tokens.json"
        tokens_file.touch(mode=0o600)
        tokens_file.write_text(json.dumps(tokens))
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRMHUB_")}
        env[TOKEN_ENV] = secrets.token_hex(16)  # through the environment, never a file
        env[PBX_TOKEN_ENV] = secrets.token_hex(16)
        ports, pids = start_nodes(children, target.url, args.nodes, env, tmp)
        out = tmp / "load.json"
        cmd = [
            sys.executable, str(Path(__file__).resolve()), "--load",
            "--ports", ",".join(map(str, ports)), "--tokens-file", str(tokens_file),
            "--customers", str(args.customers), "--seconds", str(args.seconds),
            "--rates", ",".join(str(r) for r in args.rates),
            "--via", args.via, "--ring", str(args.ring),
        ]  # fmt: skip
        cpu_before = [cpu_seconds(pid) for pid in pids]
        with profiling(children, pids[0], args.profile, tmp):
            proc = children.start(cmd, env, tmp / "load.log")
            code = proc.wait()
        cpu_used = [cpu_seconds(pid) - before for pid, before in zip(pids, cpu_before, strict=True)]
        if code != 0:
            raise SystemExit(f"bench: load failed:\n{(tmp / 'load.log').read_text()[-3000:]}")
        lines = (tmp / "load.log").read_text().strip().splitlines()
        result = json.loads(lines[-1])
        for step in result["steps"]:
            step["statuses"] = {str(k): v for k, v in step["statuses"].items()}
        goal = GOAL_MS[args.nodes]
        result.update(
            backend="sqlite" if is_sqlite(target.url) else "postgresql",
            nodes=args.nodes,
            customers=args.customers,
            agents=args.agents,
            via=args.via,
            ring=args.ring if args.via == "pbx" else None,
            goal_ms=goal,
            highest_rate_p99_under_goal=sustained(result["steps"], goal),
        )
        # CPU of each node per webhook over the whole load, warm-up step included: less
        # sensitive than the latencies to what else runs on a shared machine.
        webhooks = sum(int(rate * args.seconds) for rate in [args.rates[0], *args.rates])
        result["node_cpu_ms_per_webhook"] = [round(1000 * c / webhooks, 3) for c in cpu_used]
        out.write_text(json.dumps(result))
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            print(
                f"{result['backend']}, {args.nodes} node(s), {args.customers:,} customers,"
                f" {args.agents} agents, via {args.via}"
                + (f", ring {args.ring}" if args.via == "pbx" else "")
            )
            for s in result["steps"]:
                extra = (
                    f", other node p50 {s['other_node_p50_ms']} p99 {s['other_node_p99_ms']}"
                    if "other_node_p99_ms" in s
                    else ""
                )
                print(
                    f"  {s['rate']:>6.0f}/s (sent {s['achieved_rate']}/s): frames {s['frames']}/"
                    f"{s['frames_expected']}, p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms, "
                    f"max {s['max_ms']} ms, statuses {s['statuses']}{extra}; webhook answered"
                    f" p50 {s['answer_p50_ms']} p99 {s['answer_p99_ms']} ms"
                )
            print(f"highest rate with p99 < {goal:.0f} ms: {result['highest_rate_p99_under_goal']}")
            print(f"node CPU per webhook (ms, node A first): {result['node_cpu_ms_per_webhook']}")
        return 0
    finally:
        children.stop_all()
        target.cleanup()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
