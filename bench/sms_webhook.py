"""Signed Twilio SMS webhooks against `crmhub serve`, and against a bare aiohttp floor.

Starts `crmhub serve` as its own process on a fresh SQLite database (SMS
enabled, auth token from CRMHUB_SMS__AUTH_TOKEN, a random one when unset),
then a separate load process with 64 concurrent connections posting signed
inbound-SMS webhooks to POST /webhooks/twilio/sms: a warm-up that is not
counted, then a fixed number of requests (or a duration). Then the same load
against a bare aiohttp handler in its own process: it checks the signature
the same way (twilio's RequestValidator), inserts one row per request into
its own SQLite file (WAL, synchronous=FULL) with group commit, answers after
the commit with an empty TwiML <Response/> -- the floor of what Python does
on this machine. It prints requests/s and p50/p99/max for both and the ratio.
Goal (2-core machine): crmhub >= 0.4x the bare handler with p99 < 50 ms.
A benchmark, not a test: it asserts nothing about the figures.

    .venv/bin/python bench/sms_webhook.py                    # 20,000 requests each
    .venv/bin/python bench/sms_webhook.py --requests 5000 --json
    .venv/bin/python bench/sms_webhook.py --duration 30      # 30 s each instead
    .venv/bin/python bench/sms_webhook.py --profile /tmp/p   # py-spy on crmhub during load

Everything listens on and connects to 127.0.0.1 only. The children (server,
bare handler, load) are started by this process and terminated by it, also on
errors and Ctrl-C; the temp directory (config, databases, logs) is removed.
The secret never appears in a file or on a command line: the children get it
through the environment.

The load process is bench/sms_load.py and the bare handler bench/sms_bare.py;
both are started as this file (`--load`, `--bare`), which orchestrates and
reports.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

if not __package__:  # run as `python bench/sms_webhook.py`: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from bench.sms_bare import bare_main
from bench.sms_load import HOST, TOKEN_ENV, load_main

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# --- the orchestrator ---------------------------------------------------------------------------


class Children:
    """Every child process started here; all are terminated on exit, whatever happened."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, argv: list[str], env: dict[str, str], log_path: Path
    ) -> subprocess.Popen[bytes]:
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)


def wait_ready(proc: subprocess.Popen[bytes], port: int, log_path: Path, what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise SystemExit(f"bench: {what} exited with {proc.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise SystemExit(f"bench: {what} not ready after 60 s (see {log_path})")


def run_load(
    children: Children,
    args: argparse.Namespace,
    env: dict[str, str],
    port: int,
    pid: int,
    tmp: Path,
) -> dict[str, Any]:
    argv = [
        sys.executable, str(Path(__file__).resolve()), "--load", "--port", str(port),
        "--server-pid", str(pid), "--requests", str(args.requests), "--warmup", str(args.warmup),
        "--connections", str(args.connections), "--senders", str(args.senders),
        "--seed", str(args.seed), "--duration", str(args.duration or 0),
    ]  # fmt: skip
    out_path = tmp / f"load-{port}.json"
    with out_path.open("wb") as out:
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=out, stderr=None, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    children.procs.append(proc)
    if proc.wait() != 0:
        raise SystemExit(f"bench: load process exited with {proc.returncode}")
    return dict(json.loads(out_path.read_text()))


@contextlib.contextmanager
def profiling(children: Children, pid: int, out: str | None, tmp: Path) -> Iterator[None]:
    """py-spy on the server while the load runs (warm-up included); raw collapsed stacks."""
    if not out:
        yield
        return
    spy = children.start(
        [str(VENV_BIN / "py-spy"), "record", "--pid", str(pid), "--format", "raw",
         "--rate", "200", "--output", out, "--nonblocking",
         # e.g. PYSPY_EXTRA="--threads" or "--gil"
         *os.environ.get("PYSPY_EXTRA", "").split()],
        dict(os.environ), tmp / "py-spy.log",
    )  # fmt: skip
    time.sleep(1)  # attach
    try:
        yield
    finally:
        children.stop(spy, signal.SIGINT)  # py-spy writes the profile on SIGINT


def bench_crmhub(children: Children, args: argparse.Namespace, env: dict, tmp: Path) -> dict:
    port = free_port()
    db = tmp / "crmhub.db"
    cfg = tmp / "config.yaml"
    # No secret in here: the token reaches the server through its environment.
    cfg.write_text(
        json.dumps(
            {
                "database": {"url": f"sqlite+aiosqlite:///{db}"},
                # Like the bare handler: no access log line per request.
                "server": {"host": HOST, "port": port, "access_log": False},
                "sms": {"enabled": True, "public_url": f"http://{HOST}:{port}"},
                "teams": {"default": "Support", "by_address": {"+49 30 5550100": "Sales"}},
            }
        ),
        encoding="utf-8",
    )  # JSON is YAML
    crmhub = str(VENV_BIN / "crmhub")
    log_path = tmp / "crmhub.log"
    migrate = children.start([crmhub, "-c", str(cfg), "migrate"], env, log_path)
    if migrate.wait() != 0:
        raise SystemExit(f"bench: crmhub migrate failed:\n{log_path.read_text()[-2000:]}")
    server = children.start([crmhub, "-c", str(cfg), "serve", "--port", str(port)], env, log_path)
    wait_ready(server, port, log_path, "crmhub serve")
    log(f"crmhub serve (pid {server.pid}) on port {port}; loading")
    with profiling(children, server.pid, args.profile, tmp):
        figures = run_load(children, args, env, port, server.pid, tmp)
    children.stop(server)
    counts = sqlite3.connect(db)
    try:
        figures["stored"] = counts.execute("SELECT count(*) FROM interaction").fetchone()[0]
        figures["customers"] = counts.execute("SELECT count(*) FROM customer").fetchone()[0]
    finally:
        counts.close()
    return figures


def bench_bare(children: Children, args: argparse.Namespace, env: dict, tmp: Path) -> dict:
    port = free_port()
    db = tmp / "bare.db"
    log_path = tmp / "bare.log"
    argv = [sys.executable, str(Path(__file__).resolve()), "--bare", "--port", str(port)]
    server = children.start([*argv, "--db", str(db)], env, log_path)
    wait_ready(server, port, log_path, "bare handler")
    log(f"bare handler (pid {server.pid}) on port {port}; loading")
    figures = run_load(children, args, env, port, server.pid, tmp)
    children.stop(server)
    counts = sqlite3.connect(db)
    try:
        figures["stored"] = counts.execute("SELECT count(*) FROM sms").fetchone()[0]
    finally:
        counts.close()
    return figures


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--requests", type=int, default=20_000, help="measured requests per target")
    p.add_argument("--warmup", type=int, default=1_000, help="requests before measuring")
    p.add_argument("--duration", type=float, default=0, help="stop measuring after s seconds")
    p.add_argument("--connections", type=int, default=64, help="concurrent connections")
    p.add_argument("--senders", type=int, default=5_000, help="distinct From numbers")
    p.add_argument("--seed", type=int, default=7, help="random seed of the workload")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--profile", metavar="FILE", help="py-spy raw profile of crmhub serve")
    p.add_argument("--keep", action="store_true", help="keep the temp directory (logs, dbs)")
    # internal modes: this same file starts the load process (bench/sms_load.py) and the
    # bare handler (bench/sms_bare.py)
    p.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--server-pid", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--db", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if min(args.requests, args.warmup + 1, args.connections, args.senders) < 1:
        p.error("counts must be positive")
    return args


def report(results: dict[str, Any]) -> str:
    lines = []
    for name in ("crmhub", "bare"):
        r = results[name]
        lines += [
            f"{name:<8}{r['requests']:,} signed webhooks, {r['connections']} connections:"
            f" {r['per_second']:,.0f} req/s in {r['seconds']:.2f} s",
            f"  latency p50 {r['p50_ms']:.1f} ms   p99 {r['p99_ms']:.1f} ms"
            f"   max {r['max_ms']:.1f} ms   errors {r['errors']:,} {r['statuses']}",
            f"  cpu     server {r.get('server_cpu_us_per_request', '?')} us/request"
            f" ({r.get('server_cpu_percent', '?')} % of a core), load process"
            f" {r['load_cpu_percent']} %; rows stored {r['stored']:,}"
            + (f", customers {r['customers']:,}" if "customers" in r else ""),
        ]
    ratio = results["ratio"]
    met = ratio >= 0.4 and results["crmhub"]["p99_ms"] < 50
    lines.append(
        f"ratio   crmhub/bare {ratio:.2f}x  (goal >= 0.4x with p99 < 50 ms: "
        f"{'met' if met else 'not met'})"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.load:
        return load_main(args)
    if args.bare:
        return bare_main(args)
    env = dict(os.environ)
    if not env.get(TOKEN_ENV):
        env[TOKEN_ENV] = secrets.token_hex(16)  # any token does, as long as both sides share it
    env.pop("CRMHUB_CONFIG", None)
    tmp = Path(tempfile.mkdtemp(prefix="crmhub-bench-sms-"))
    children = Children()

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with it ignored
    try:
        crmhub = bench_crmhub(children, args, env, tmp)
        bare = bench_bare(children, args, env, tmp)
        results = {
            "crmhub": crmhub,
            "bare": bare,
            "ratio": round(crmhub["per_second"] / bare["per_second"], 3),
            "cpus": os.cpu_count(),
        }
        print(json.dumps(results, indent=2) if args.json else report(results))
        return 0
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        children.stop_all()
        if args.keep:
            log(f"kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
