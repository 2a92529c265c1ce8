"""Signed Twilio SMS webhooks replayed by wrk: `crmhub serve` against the bare handler.

The load generator is wrk (C, one thread, 64 connections, pinned to core 1
with taskset), so it costs the servers as little CPU as possible; the server
under test is pinned to core 0. Pre-signs `--requests` inbound-SMS webhooks
(bench/sms_load.py's forms: each its own MessageSid, 5,000 senders) plus an
uncounted warm-up, writes them ready to send into a temp directory with the
Lua script of bench/wrk_replay.py, then in one run:

1. `crmhub serve` on a fresh SQLite database (SMS on, no access log), as
   bench/sms_webhook.py starts it: warm-up, then the measured replay;
2. the bare aiohttp + SQLite group-commit handler of bench/sms_bare.py on
   the same port (so the same signed bytes are valid): the same.

Each request is sent once; a run ends when every request is answered (or at
`--duration`). Printed per side: requests/s (first request to last answer),
wrk's p50/p99/p99.9/max, non-2xx answers, the server's CPU per request, and
the rows in its database afterwards, checked against the 2xx answers
(warm-up included); then the ratio crmhub/bare. Goal (issue 13): >= 0.5x
with crmhub's p99 < 50 ms. A benchmark: it asserts nothing about the figures.

    flock /tmp/bench.lock .venv/bin/python bench/webhook_wrk.py            # 150,000 each
    .venv/bin/python bench/webhook_wrk.py --requests 30000 --json
    .venv/bin/python bench/webhook_wrk.py --no-pin                         # no taskset

Needs `wrk` (Debian package wrk) and `taskset` (util-linux) on PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if not __package__:  # run as `python bench/webhook_wrk.py`: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.sms_load import HOST, PATH, TOKEN_ENV, cpu_seconds, make_requests
from bench.sms_webhook import VENV_BIN, Children, free_port, log, wait_ready
from bench.wrk_replay import JSON_MARK, WrkRun, run_wrk, write_requests, write_script

INBOUND_SMS = "SELECT count(*) FROM interaction WHERE channel = 'sms' AND direction = 'in'"
SMS_WEBHOOK = Path(__file__).resolve().parent / "sms_webhook.py"


def pinned(argv: list[str], cpu: str | None) -> list[str]:
    return ["taskset", "-c", cpu, *argv] if cpu is not None else argv


def profiler(prefix: str | None, pid: int, name: str) -> subprocess.Popen[bytes] | None:
    """py-spy sampling the server during the measured replay (its figures then include
    py-spy's cost: for finding where the time goes, not for the headline)."""
    if prefix is None:
        return None
    spy = shutil.which("py-spy") or str(VENV_BIN / "py-spy")
    out = f"{prefix}-{name}.txt"
    argv = [spy, "record", "--pid", str(pid), "--rate", "250", "--nonblocking"]
    argv += ["--format", "raw", "--output", out]
    log(f"py-spy: {name}'s collapsed stacks to {out}")
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def replay(
    args: argparse.Namespace, name: str, port: int, pid: int, tmp: Path, script: Path
) -> dict[str, Any]:
    """Warm-up, then the measured file, against the server on `port` (process `pid`)."""
    url = f"http://{HOST}:{port}{PATH}"
    wrk_cpu = None if args.no_pin else "1"

    def wrk(name: str, count: int, duration: int) -> WrkRun:
        return WrkRun(url, tmp / name, count, script, args.connections, duration, wrk_cpu)

    warm = run_wrk(wrk("warmup.req", args.warmup, 120))
    load = os.getloadavg()
    spy = profiler(args.profile, pid, name)
    cpu0 = cpu_seconds(pid)
    run = wrk("measured.req", args.requests, args.duration)
    fig = run_wrk(run)
    cpu1 = cpu_seconds(pid)
    if spy is not None:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        spy.wait(timeout=60)
    fig["warmup_ok"] = warm["ok"]
    fig["warmup_errors"] = warm["errors"] + warm["unanswered"]
    fig["loadavg_before"] = [round(x, 2) for x in load]
    fig["wrk_output"] = run.output
    if cpu0 is not None and cpu1 is not None and fig["answered"]:
        fig["server_cpu_us_per_request"] = round((cpu1 - cpu0) / fig["answered"] * 1e6)
        fig["server_cpu_percent"] = round((cpu1 - cpu0) / fig["seconds"] * 100)
    return fig


def count(db: Path, sql: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


def bench_crmhub(
    children: Children, args: argparse.Namespace, env: dict[str, str], port: int, tmp: Path
) -> dict[str, Any]:
    db = tmp / "crmhub.db"
    cfg = tmp / "config.yaml"
    cfg.write_text(
        json.dumps(
            {
                "database": {"url": f"sqlite+aiosqlite:///{db}"},
                "server": {"host": HOST, "port": port, "access_log": False},
                "sms": {"enabled": True, "public_url": f"http://{HOST}:{port}"},
                "teams": {"default": "Support", "by_address": {"+49 30 5550100": "Sales"}},
            }
        ),
        encoding="utf-8",
    )  # JSON is YAML; no secret in it (the token comes through the environment)
    crmhub = str(VENV_BIN / "crmhub")
    log_path = tmp / "crmhub.log"
    migrate = children.start([crmhub, "-c", str(cfg), "migrate"], env, log_path)
    if migrate.wait() != 0:
        raise SystemExit(f"bench: crmhub migrate failed:\n{log_path.read_text()[-2000:]}")
    argv = [crmhub, "-c", str(cfg), "serve", "--port", str(port)]
    server = children.start(pinned(argv, None if args.no_pin else "0"), env, log_path)
    wait_ready(server, port, log_path, "crmhub serve")
    log(f"crmhub serve (pid {server.pid}) on port {port}; wrk replaying")
    fig = replay(args, "crmhub", port, server.pid, tmp, tmp / "replay.lua")
    children.stop(server)
    fig["stored"] = count(db, INBOUND_SMS)
    fig["customers"] = count(db, "SELECT count(*) FROM customer")
    return fig


def bench_bare(
    children: Children, args: argparse.Namespace, env: dict[str, str], port: int, tmp: Path
) -> dict[str, Any]:
    db = tmp / "bare.db"
    log_path = tmp / "bare.log"
    argv = [sys.executable, str(SMS_WEBHOOK), "--bare", "--port", str(port), "--db", str(db)]
    server = children.start(pinned(argv, None if args.no_pin else "0"), env, log_path)
    wait_ready(server, port, log_path, "bare handler")
    log(f"bare handler (pid {server.pid}) on port {port}; wrk replaying")
    fig = replay(args, "bare", port, server.pid, tmp, tmp / "replay.lua")
    children.stop(server)
    fig["stored"] = count(db, "SELECT count(*) FROM sms")
    return fig


def check(fig: dict[str, Any]) -> str:
    """Rows stored against 2xx answers (warm-up included); exact when nothing is in flight."""
    answered_ok = fig["ok"] + fig["warmup_ok"]
    if fig["stored"] == answered_ok:
        return f"rows stored {fig['stored']:,} = 2xx answers {answered_ok:,}: ok"
    if fig["unanswered"] and answered_ok <= fig["stored"] <= answered_ok + fig["unanswered"]:
        return (
            f"rows stored {fig['stored']:,}, 2xx answers {answered_ok:,}, "
            f"{fig['unanswered']} unanswered at the end (stopped by --duration)"
        )
    return f"rows stored {fig['stored']:,} != 2xx answers {answered_ok:,}: MISMATCH"


def report(results: dict[str, Any]) -> str:
    lines = []
    for name in ("crmhub", "bare"):
        if name not in results:
            continue
        r = results[name]
        lines += [
            f"{name:<7} {r['answered']:,} signed webhooks by wrk, {results['connections']} "
            f"connections: {r['per_second']:,.0f} req/s in {r['seconds']:.2f} s"
            + ("" if r["complete"] else " (stopped by --duration)"),
            f"  latency p50 {r['p50_ms']:.2f} ms   p99 {r['p99_ms']:.2f} ms   p99.9 "
            f"{r['p999_ms']:.2f} ms   max {r['max_ms']:.2f} ms",
            f"  answers 2xx {r['ok']:,}, non-2xx {r['errors']:,} {r['statuses']}, socket "
            f"errors {r['socket_errors']}; warm-up {r['warmup_ok']:,} ok, "
            f"{r['warmup_errors']} not",
            f"  cpu     server {r.get('server_cpu_us_per_request', '?')} us/request "
            f"({r.get('server_cpu_percent', '?')} % of a core), wrk "
            f"{r.get('wrk_cpu_percent', '?')} %; load average before {r['loadavg_before']}",
            f"  {check(r)}" + (f", customers {r['customers']:,}" if "customers" in r else ""),
        ]
    if "ratio" not in results:
        return "\n".join(lines)
    ratio = results["ratio"]
    met = ratio >= 0.5 and results["crmhub"]["p99_ms"] < 50
    lines.append(
        f"ratio   crmhub/bare {ratio:.2f}x  (goal >= 0.5x with p99 < 50 ms: "
        f"{'met' if met else 'not met'})"
    )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--requests", type=int, default=150_000, help="measured requests per side")
    p.add_argument("--warmup", type=int, default=2_000, help="uncounted requests before")
    p.add_argument("--duration", type=int, default=600, help="wrk -d cap per side, seconds")
    p.add_argument("--connections", type=int, default=64, help="wrk -c")
    p.add_argument("--senders", type=int, default=5_000, help="distinct From numbers")
    p.add_argument("--seed", type=int, default=7, help="random seed of the workload")
    p.add_argument("--no-pin", action="store_true", help="no taskset for server and wrk")
    p.add_argument("--side", choices=("both", "crmhub", "bare"), default="both",
                   help="which servers to run (the ratio needs both)")  # fmt: skip
    p.add_argument("--profile", metavar="PREFIX",
                   help="py-spy the measured replay: PREFIX-<side>.txt, collapsed")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--keep", action="store_true", help="keep the temp directory")
    args = p.parse_args(argv)
    if min(args.requests, args.warmup, args.connections, args.senders, args.duration) < 1:
        p.error("counts must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None or (not args.no_pin and shutil.which("taskset") is None):
        raise SystemExit("bench: needs wrk and taskset (apt-get install wrk util-linux)")
    env = dict(os.environ)
    env.pop("CRMHUB_CONFIG", None)
    if not env.get(TOKEN_ENV):
        env[TOKEN_ENV] = secrets.token_hex(16)  # through the environment, never a file
    tmp = Path(tempfile.mkdtemp(prefix="crmhub-bench-wrk-"))
    children = Children()

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        port = free_port()  # both servers listen here in turn: the signatures cover the URL
        t = time.perf_counter()
        items = make_requests(
            f"http://{HOST}:{port}{PATH}", env[TOKEN_ENV], args.warmup + args.requests,
            args.warmup, args.senders, args.seed,
        )  # fmt: skip
        host = f"{HOST}:{port}"
        write_requests(tmp / "warmup.req", host, PATH, items[: args.warmup])
        write_requests(tmp / "measured.req", host, PATH, items[args.warmup :])
        del items
        write_script(tmp)
        log(f"signed {args.warmup + args.requests:,} requests in {time.perf_counter() - t:.1f} s")
        results: dict[str, Any] = {"connections": args.connections, "cpus": os.cpu_count()}
        if args.side in ("both", "crmhub"):
            results["crmhub"] = bench_crmhub(children, args, env, port, tmp)
        if args.side in ("both", "bare"):
            results["bare"] = bench_bare(children, args, env, port, tmp)
        if args.side == "both":
            results["ratio"] = round(
                results["crmhub"]["per_second"] / results["bare"]["per_second"], 3
            )
        if args.json:
            print(json.dumps(results, indent=2))
        else:
            for name in ("crmhub", "bare"):
                if name not in results:
                    continue
                print(f"--- wrk against {name}:")
                out = results[name]["wrk_output"]
                print("\n".join(x for x in out if x.strip() and not x.startswith(JSON_MARK)))
            print(report(results))
        return 0
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except subprocess.SubprocessError as exc:
        log(f"failed: {exc}")
        return 1
    finally:
        children.stop_all()
        if args.keep:
            log(f"kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
