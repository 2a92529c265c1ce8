"""A counting SMTP sink for the email benchmarks, run as its own process.

aiosmtpd's SMTP server on uvloop (when installed) with a handler that counts
each message (and its bytes and recipients), discards it and answers 250.
Asked over its stdin ("stats" per line), it reports its counters and its own
CPU time as JSON lines on stdout, so a benchmark can check that the sink got
exactly what the client sent and how busy the sink was; EOF on stdin stops
it. In its own process so it never shares an event loop or the GIL with the
client being measured (the machine has 2 cores).

    sink = Sink(); sink.port; sink.stats(); sink.stop()
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"


def install_uvloop() -> str:
    """uvloop where installed, like `crmhub serve`; returns the loop's name for the report."""
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    uvloop.install()
    return "uvloop"


class CountingHandler:
    """aiosmtpd handler: count the message, drop it, answer 250."""

    def __init__(self, latency: float = 0.0) -> None:
        self.messages = 0
        self.bytes = 0
        self.recipients = 0
        self.latency = latency  # seconds before the answer, as a real relay takes

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages += 1
        self.bytes += len(envelope.content)
        self.recipients += len(envelope.rcpt_tos)
        if self.latency:
            await asyncio.sleep(self.latency)
        return "250 OK"


async def sink_serve(loop_name: str) -> None:
    from aiosmtpd.smtp import SMTP

    loop = asyncio.get_running_loop()
    handler = CountingHandler(float(os.environ.get("BENCH_SINK_LATENCY_MS", "0")) / 1000)
    connections = 0

    def factory() -> SMTP:
        nonlocal connections
        connections += 1
        return SMTP(handler, hostname="sink.bench", ident="bench-sink")

    server = await loop.create_server(factory, HOST, 0)
    await answer_stats(
        server.sockets[0].getsockname()[1],
        loop_name,
        lambda: {
            "messages": handler.messages,
            "bytes": handler.bytes,
            "recipients": handler.recipients,
            "connections": connections,
        },
    )
    server.close()


async def answer_stats(port: int, loop_name: str, stats: Callable[[], dict[str, Any]]) -> None:
    """The sinks' side of the pipe: say the port, then `stats()` and the CPU time for
    every "stats" line on stdin; return at EOF (the orchestrator is done)."""
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def say(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    say({"port": port, "loop": loop_name, "pid": os.getpid()})
    while line := await reader.readline():
        if line.strip() == b"stats":
            say({**stats(), "cpu": time.process_time()})


def sink_main() -> int:
    loop_name = install_uvloop()
    asyncio.run(sink_serve(loop_name))
    return 0


class Sink:
    """The sink process, seen from the orchestrator."""

    script = Path(__file__).resolve()  # the sink's program (bench/twilio_sink.py: another)

    def __init__(self, latency_ms: float = 0.0) -> None:
        """`latency_ms`: the sink waits this long before each answer (a real relay's,
        or Twilio's API's, answer time); 0 answers at once."""
        env = {**os.environ, "BENCH_SINK_LATENCY_MS": str(latency_ms)}
        self.proc = subprocess.Popen(
            [sys.executable, str(self.script)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True, env=env,
        )  # fmt: skip
        hello = self._read()
        self.port = int(hello["port"])
        self.loop = str(hello["loop"])

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"bench: the sink exited with {self.proc.wait()}")
        return dict(json.loads(line))

    def stats(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"stats\n")
        self.proc.stdin.flush()
        return self._read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()  # EOF: the sink closes its server and exits
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


if __name__ == "__main__":
    sys.exit(sink_main())
