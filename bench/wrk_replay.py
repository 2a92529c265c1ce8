"""wrk replaying pre-signed requests: the request files, the Lua script, one wrk process.

Shared by bench/webhook_wrk.py (one node against the bare handler) and
bench/webhook_nodes.py (two nodes on one PostgreSQL). The Python side writes
every request of a run, complete and ready to send, into a file ("<length>\\n"
then the raw HTTP request, repeated); the Lua script (written next to it)
loads the file in wrk's `init()` and hands the requests out in order from
`request()`, one per call across all connections, so each is sent exactly
once. When the file is used up a connection gets an empty request and idles;
when the last answer is in, the script writes a marker file and this module
stops wrk with SIGINT (wrk's main thread otherwise sleeps for the whole `-d`).
`done()` prints wrk's latency percentiles (µs, with wrk's own correction for
coordinated omission) and the status counts as one JSON line.

wrk calls `request()` once before the run to check what it returns (how many
requests one string holds); the script answers that call with the first
request without consuming it. That holds for thread 0 only, so runs use
`-t1` (one thread, one Lua state, one order).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.sms_load import cpu_seconds

JSON_MARK = "BENCH_JSON "

LUA = r"""-- written by bench/wrk_replay.py: replay pre-signed requests once each, in order
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local reqs, total, nexti, checked = {}, 0, 1, false
local done_file
sent, answered, first_at, last_at = 0, 0, 0, 0
statuses = {}

function init(args)
  local f = assert(io.open(os.getenv("BENCH_REQUESTS"), "rb"))
  local data = f:read("*a")
  f:close()
  local pos = 1
  while pos <= #data do
    local nl = string.find(data, "\n", pos, true)
    local len = tonumber(string.sub(data, pos, nl - 1))
    total = total + 1
    reqs[total] = string.sub(data, nl + 1, nl + len)
    pos = nl + 1 + len
  end
  done_file = os.getenv("BENCH_DONE")
end

function request()
  if not checked then -- wrk's check before the run: not sent, not consumed
    checked = true
    return reqs[1]
  end
  if nexti > total then
    return "" -- used up: this connection idles until the run is stopped
  end
  if nexti == 1 then first_at = now() end
  local r = reqs[nexti]
  nexti = nexti + 1
  sent = sent + 1
  return r
end

function response(status, headers, body)
  answered = answered + 1
  local k = tostring(status)
  statuses[k] = (statuses[k] or 0) + 1
  if answered == total then
    last_at = now()
    local f = io.open(done_file, "w")
    f:write("done\n")
    f:close()
  end
end

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local t = threads[1]
  local st = t:get("statuses")
  local ok, parts = 0, {}
  for k, v in pairs(st) do
    local code = tonumber(k)
    if code >= 200 and code < 300 then ok = ok + v end
    table.insert(parts, string.format('"%s": %d', k, v))
  end
  local e = summary.errors
  io.write(string.format(
    '%s{"sent": %d, "answered": %d, "ok": %d, "statuses": {%s}, '
    .. '"first_at": %.6f, "last_at": %.6f, "wrk_seconds": %.6f, "wrk_requests": %d, '
    .. '"p50_us": %d, "p99_us": %d, "p999_us": %d, "max_us": %d, "mean_us": %.1f, '
    .. '"socket_errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}}\n',
    "BENCH_JSON ", t:get("sent"), t:get("answered"), ok, table.concat(parts, ", "),
    t:get("first_at"), t:get("last_at"), summary.duration / 1e6, summary.requests,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max,
    latency.mean, e.connect, e.read, e.write, e.timeout))
end
"""


def raw_request(host: str, path: str, signature: bytes, body: bytes) -> bytes:
    """One complete HTTP/1.1 POST of a Twilio form, as Twilio would send it."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        "User-Agent: TwilioProxy/1.1\r\n"
        f"X-Twilio-Signature: {signature.decode()}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def write_requests(path: Path, host: str, url_path: str, items: Iterable[bytes]) -> int:
    """Write the items (b"<signature>\\n<form>" as bench/sms_load.py makes them) for wrk."""
    n = 0
    with path.open("wb") as out:
        for item in items:
            signature, body = item.split(b"\n", 1)
            req = raw_request(host, url_path, signature, body)
            out.write(b"%d\n" % len(req))
            out.write(req)
            n += 1
    return n


def write_script(tmp: Path) -> Path:
    script = tmp / "replay.lua"
    script.write_text(LUA, encoding="utf-8")
    return script


@dataclass
class WrkRun:
    """One wrk process replaying one request file; start(), then finish()."""

    url: str
    requests_file: Path
    count: int
    script: Path
    connections: int = 64
    duration: int = 600
    cpu: str | None = "1"  # taskset -c; None: not pinned
    timeout: str = "30s"
    proc: subprocess.Popen[bytes] | None = None
    output: list[str] = field(default_factory=list)
    cpu_seconds: float = 0.0

    def start(self) -> None:
        self.done_file = self.requests_file.with_suffix(".done")
        self.done_file.unlink(missing_ok=True)
        self.out_path = self.requests_file.with_suffix(".out")
        env = dict(os.environ)
        env["BENCH_REQUESTS"] = str(self.requests_file)
        env["BENCH_DONE"] = str(self.done_file)
        argv = [
            "wrk", "-t1", f"-c{self.connections}", f"-d{self.duration}s", "--latency",
            "--timeout", self.timeout, "-s", str(self.script), self.url,
        ]  # fmt: skip
        if self.cpu is not None:
            argv = ["taskset", "-c", self.cpu, *argv]
        with self.out_path.open("wb") as out:
            self.proc = subprocess.Popen(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip

    def poll(self) -> bool:
        """True once wrk has exited; sends it SIGINT when the last answer is in."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            return True
        if self.done_file.exists():
            self.cpu_seconds = cpu_seconds(self.proc.pid) or 0.0
            self.proc.send_signal(signal.SIGINT)  # wrk then stops within ~100 ms and reports
            self.done_file.unlink()
        return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def finish(self) -> dict[str, Any]:
        """Wait for wrk, then its figures: rate over first request to last answer."""
        assert self.proc is not None
        while not self.poll():
            time.sleep(0.02)
        self.output = self.out_path.read_text(errors="replace").splitlines()
        if self.proc.returncode != 0:
            tail = "\n".join(self.output[-20:])
            raise SystemExit(f"bench: wrk exited with {self.proc.returncode}:\n{tail}")
        line = next((x for x in self.output if x.startswith(JSON_MARK)), None)
        if line is None:
            raise SystemExit("bench: no figures from wrk:\n" + "\n".join(self.output[-20:]))
        fig: dict[str, Any] = json.loads(line[len(JSON_MARK) :])
        complete = fig["answered"] == self.count and fig["last_at"] > 0
        seconds = fig["last_at"] - fig["first_at"] if complete else fig["wrk_seconds"]
        fig["complete"] = complete
        fig["seconds"] = round(seconds, 3)
        fig["per_second"] = round(fig["answered"] / seconds, 1) if seconds > 0 else 0.0
        fig["errors"] = fig["answered"] - fig["ok"]
        fig["unanswered"] = fig["sent"] - fig["answered"]
        if self.cpu_seconds and seconds > 0:
            fig["wrk_cpu_percent"] = round(self.cpu_seconds / seconds * 100)
        for k in ("p50", "p99", "p999", "max"):
            fig[f"{k}_ms"] = round(fig.pop(f"{k}_us") / 1000, 2)
        return fig


def run_wrk(run: WrkRun) -> dict[str, Any]:
    try:
        run.start()
        return run.finish()
    finally:
        run.stop()


def run_together(runs: list[WrkRun]) -> list[dict[str, Any]]:
    """Several wrk processes at once (e.g. one per node); each stopped when its file is done."""
    try:
        for run in runs:
            run.start()
        while not all([run.poll() for run in runs]):
            time.sleep(0.02)
        return [run.finish() for run in runs]
    finally:
        for run in runs:
            run.stop()
