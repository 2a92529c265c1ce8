"""Two `crmhub serve` nodes on one PostgreSQL under wrk: rate, latency and correctness.

A fresh database on the PostgreSQL server named by `--db` (created here,
dropped afterwards unless `--keep`), migrated; two `crmhub serve` nodes on it
(SMS on, no access log, the same public URL, so one signature is valid at
both). `--requests` inbound-SMS webhooks are pre-signed (bench/sms_load.py's
forms, one MessageSid each) and split in two halves, one per node; every
`--dup-every`-th request of each half is also sent to the other node right
after its own request there, as a provider retry racing the original. Two wrk
processes (`-t1 -c32` each by default, both pinned to core 1; the nodes and
PostgreSQL are not pinned) replay the two files at the same time, after an
uncounted warm-up split the same way (without duplicates).

Printed per node: requests/s (first request to last answer), wrk's
p50/p99/p99.9/max, non-2xx answers, the node's CPU per request; then the
correctness of the whole run from the database: inbound SMS interactions
against the distinct MessageSids answered 2xx, MessageSids stored more than
once, and MessageSids answered 2xx without a row. Without a goal (issue 13
asks to measure and record it); it asserts nothing.

    flock /tmp/bench.lock .venv/bin/python bench/webhook_nodes.py
    .venv/bin/python bench/webhook_nodes.py --requests 30000 --dup-every 10 \\
        --db postgresql+asyncpg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if not __package__:  # run as `python bench/webhook_nodes.py`: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.sms_load import HOST, PATH, TOKEN_ENV, cpu_seconds, make_requests
from bench.sms_webhook import VENV_BIN, Children, free_port, log, wait_ready
from bench.target import prepare_target
from bench.wrk_replay import JSON_MARK, WrkRun, run_together, write_requests, write_script

SID = re.compile(rb"(?:^|&)MessageSid=(SM[0-9a-f]+)")
DEFAULT_DB = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


def sid_of(item: bytes) -> str:
    found = SID.search(item.split(b"\n", 1)[1])
    assert found is not None
    return found.group(1).decode()


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs so far, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def with_retries(own: list[bytes], other: list[bytes], every: int) -> list[bytes]:
    """A node's half, each `every`-th request of the other half sent right after its twin."""
    out: list[bytes] = []
    for i, item in enumerate(own):
        out.append(item)
        if every and i % every == 0 and i < len(other):
            out.append(other[i])
    return out


def start_nodes(
    children: Children, url: str, env: dict[str, str], tmp: Path, ports: list[int]
) -> list[int]:
    pids = []
    for n, port in enumerate(ports):
        cfg = tmp / f"node{n}.yaml"
        cfg.write_text(
            json.dumps(
                {
                    "database": {"url": url},
                    "server": {"host": HOST, "port": port, "access_log": False},
                    # One public URL for both: what the provider signs (a load balancer's).
                    "sms": {"enabled": True, "public_url": f"http://{HOST}:{ports[0]}"},
                    "teams": {"default": "Support", "by_address": {"+49 30 5550100": "Sales"}},
                }
            ),
            encoding="utf-8",
        )  # JSON is YAML; the token comes through the environment
        log_path = tmp / f"node{n}.log"
        argv = [str(VENV_BIN / "crmhub"), "-c", str(cfg), "serve", "--port", str(port)]
        proc = children.start(argv, env, log_path)
        wait_ready(proc, port, log_path, f"crmhub serve node {n}")
        log(f"node {n}: pid {proc.pid}, port {port}")
        pids.append(proc.pid)
    return pids


async def stored_sids(url: str) -> tuple[int, dict[str, int], int]:
    """Inbound SMS interactions, how many rows each provider id has, deadlocks so far."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            total = (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM interaction"
                        " WHERE channel = 'sms' AND direction = 'in'"
                    )
                )
            ).scalar_one()
            rows = await conn.execute(
                text(
                    "SELECT provider_id, count(*) FROM interaction"
                    " WHERE channel = 'sms' AND direction = 'in' GROUP BY provider_id"
                )
            )
            per_sid = {str(r[0]): int(r[1]) for r in rows}
            deadlocks = (
                await conn.execute(
                    text(
                        "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
                    )
                )
            ).scalar_one()
            return int(total), per_sid, int(deadlocks)
    finally:
        await engine.dispose()


def log_findings(path: Path) -> str:
    """What a node logged about batches that failed (races with the other node)."""
    text = path.read_text(errors="replace")
    lines = text.splitlines()
    retried = sum("retrying its contacts one by one" in x for x in lines)
    errors = [x for x in lines if " ERROR " in x]
    first = f"; first: {errors[0][:160]}" if errors else ""
    return f"batches retried one by one {retried}, ERROR lines {len(errors)}{first}"


def correctness(
    total: int, per_sid: dict[str, int], sent: set[str], figs: list[dict[str, Any]]
) -> list[str]:
    non2xx = sum(f["errors"] + f["unanswered"] + f["warmup_errors"] for f in figs)
    dups = {sid: n for sid, n in per_sid.items() if n > 1}
    missing = sent - per_sid.keys()
    extra = per_sid.keys() - sent
    lines = [
        f"stored inbound SMS interactions {total:,}; distinct MessageSids sent {len(sent):,}"
        f" (answered non-2xx or not at all: {non2xx})",
        f"MessageSids stored more than once: {len(dups)}; rows not from this run: {len(extra)}",
    ]
    if non2xx == 0:
        # Every request was answered 2xx, so every MessageSid sent was: each needs one row.
        ok = total == len(sent) and not dups and not missing and not extra
        lines.append(
            f"2xx without a row: {len(missing)}; interactions == distinct MessageSids answered"
            f" 2xx: {'yes' if total == len(sent) else 'NO'} -> {'ok' if ok else 'MISMATCH'}"
        )
    else:
        lines.append(
            f"{non2xx} requests not answered 2xx (wrk cannot say which): MessageSids sent"
            f" without a row {len(missing)} is an upper bound of lost acknowledgements"
        )
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--db", default=DEFAULT_DB, help="PostgreSQL server (a fresh database)")
    p.add_argument("--requests", type=int, default=150_000, help="distinct measured webhooks")
    p.add_argument("--warmup", type=int, default=2_000, help="uncounted webhooks before")
    p.add_argument("--dup-every", type=int, default=20, help="retry every n-th at the other node")
    p.add_argument("--connections", type=int, default=32, help="wrk -c per node")
    p.add_argument("--duration", type=int, default=600, help="wrk -d cap, seconds")
    p.add_argument("--senders", type=int, default=5_000, help="distinct From numbers")
    p.add_argument("--seed", type=int, default=7, help="random seed of the workload")
    p.add_argument("--no-pin", action="store_true", help="no taskset for wrk")
    p.add_argument("--keep", action="store_true", help="keep the database and temp directory")
    args = p.parse_args(argv)
    if min(args.requests, args.warmup, args.connections, args.senders) < 2:
        p.error("counts must be at least 2")
    if not args.db.startswith("postgresql"):
        p.error("--db must name a PostgreSQL server")
    return args


def run(args: argparse.Namespace, children: Children, tmp: Path, url: str) -> list[str]:
    from hub.store.migrate import upgrade

    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMHUB_")}
    env[TOKEN_ENV] = secrets.token_hex(16)  # through the environment, never a file
    upgrade(url)
    ports = [free_port(), free_port()]
    t = time.perf_counter()
    items = make_requests(
        f"http://{HOST}:{ports[0]}{PATH}", env[TOKEN_ENV], args.warmup + args.requests,
        args.warmup, args.senders, args.seed,
    )  # fmt: skip
    sent = {sid_of(item) for item in items}
    warm, measured = items[: args.warmup], items[args.warmup :]
    half = len(measured) // 2
    halves = [measured[:half], measured[half:]]
    files = []
    for n, port in enumerate(ports):
        host = f"{HOST}:{port}"
        write_requests(tmp / f"warmup{n}.req", host, PATH, warm[n::2])
        own = with_retries(halves[n], halves[1 - n], args.dup_every)
        files.append((tmp / f"node{n}.req", write_requests(tmp / f"node{n}.req", host, PATH, own)))
    del items, warm, measured, halves
    script = write_script(tmp)
    log(f"signed {args.warmup + args.requests:,} requests in {time.perf_counter() - t:.1f} s")
    pids = start_nodes(children, url, env, tmp, ports)
    cpu = None if args.no_pin else "1"

    def wrk(n: int, path: Path, count: int, duration: int) -> WrkRun:
        target = f"http://{HOST}:{ports[n]}{PATH}"
        return WrkRun(target, path, count, script, args.connections, duration, cpu)

    warm_counts = [len(range(n, args.warmup, 2)) for n in (0, 1)]
    warmed = run_together([wrk(n, tmp / f"warmup{n}.req", warm_counts[n], 120) for n in (0, 1)])
    load = os.getloadavg()
    cpu0, busy0 = [cpu_seconds(pid) for pid in pids], machine_busy()
    runs = [wrk(n, path, count, args.duration) for n, (path, count) in enumerate(files)]
    figs = run_together(runs)
    cpu1, busy1 = [cpu_seconds(pid) for pid in pids], machine_busy()
    for pid_proc in list(children.procs):
        children.stop(pid_proc)
    total, per_sid, deadlocks = asyncio.run(stored_sids(url))
    busy = (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]) * 100
    lines = [f"load average before {[round(x, 2) for x in load]}; both cores {busy:.0f} % busy"]
    for n, (fig, warm_fig) in enumerate(zip(figs, warmed, strict=True)):
        fig["warmup_errors"] = warm_fig["errors"] + warm_fig["unanswered"]
        print(f"--- wrk against node {n}:")
        out = runs[n].output
        print("\n".join(x for x in out if x.strip() and not x.startswith(JSON_MARK)))
        c0, c1 = cpu0[n], cpu1[n]
        node_cpu = (
            f"{(c1 - c0) / fig['answered'] * 1e6:.0f} us/request ({(c1 - c0) / fig['seconds']:.0%}"
            " of a core)"
            if c0 is not None and c1 is not None and fig["answered"]
            else "?"
        )
        lines += [
            f"node {n}  {fig['answered']:,} webhooks ({fig['sent']:,} sent), {args.connections}"
            f" connections: {fig['per_second']:,.0f} req/s in {fig['seconds']:.2f} s"
            + ("" if fig["complete"] else " (stopped by --duration)"),
            f"  latency p50 {fig['p50_ms']:.2f} ms   p99 {fig['p99_ms']:.2f} ms   p99.9"
            f" {fig['p999_ms']:.2f} ms   max {fig['max_ms']:.2f} ms",
            f"  answers 2xx {fig['ok']:,}, non-2xx {fig['errors']:,} {fig['statuses']}, socket"
            f" errors {fig['socket_errors']}; cpu {node_cpu}, wrk {fig.get('wrk_cpu_percent')} %",
            f"  log: {log_findings(tmp / f'node{n}.log')}",
        ]
    rate = sum(f["answered"] for f in figs) / max(f["seconds"] for f in figs)
    lines.append(
        f"both    {rate:,.0f} req/s together (answers over the longer run); PostgreSQL"
        f" deadlocks in the database {deadlocks}"
    )
    lines += correctness(total, per_sid, sent, figs)
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None or (not args.no_pin and shutil.which("taskset") is None):
        raise SystemExit("bench: needs wrk and taskset (apt-get install wrk util-linux)")
    target = prepare_target(args.db, args.keep)
    tmp = Path(tempfile.mkdtemp(prefix="crmhub-bench-nodes-"))
    children = Children()

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        log(f"database: {target.where}")
        print("\n".join(run(args, children, tmp, target.url)))
        return 0
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        children.stop_all()
        target.cleanup()
        if args.keep:
            log(f"kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
