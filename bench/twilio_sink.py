"""A counting fake of Twilio's Messages API for the SMS benchmarks, run as its own process.

An aiohttp server (on uvloop when installed) that answers
`POST /2010-04-01/Accounts/{sid}/Messages.json` as Twilio does (201 and the
message resource as JSON, status "queued") and counts the requests. Like
bench/smtp_sink.py it reports its counters as JSON lines when asked "stats" on
stdin and stops on EOF, in its own process so it never shares an event loop or
the GIL with the client being measured.

    sink = TwilioSink(); sink.port; sink.stats()["messages"]; sink.stop()
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

if not __package__:  # run as `python bench/twilio_sink.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.smtp_sink import HOST, Sink, answer_stats, install_uvloop

ACCOUNT_SID = "AC" + "b" * 32


async def sink_serve(loop_name: str) -> None:
    from aiohttp import web

    counts = {"messages": 0, "bytes": 0}
    latency = float(os.environ.get("BENCH_SINK_LATENCY_MS", "0")) / 1000

    async def messages(request: web.Request) -> web.Response:
        form = await request.post()
        if latency:
            await asyncio.sleep(latency)  # Twilio's API answers in ~100-300 ms
        counts["messages"] += 1
        counts["bytes"] += len(str(form.get("Body", "")))
        sid = f"SM{counts['messages']:032x}"
        account = request.match_info["account"]
        answer = {
            "sid": sid,
            "account_sid": account,
            "to": form.get("To"),
            "from": form.get("From"),
            "body": form.get("Body"),
            "status": "queued",
            "num_segments": "1",
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{account}/Messages/{sid}.json",
        }
        return web.Response(status=201, text=json.dumps(answer), content_type="application/json")

    app = web.Application()
    app.router.add_post("/2010-04-01/Accounts/{account}/Messages.json", messages)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    await answer_stats(runner.addresses[0][1], loop_name, lambda: dict(counts))
    await runner.cleanup()


class TwilioSink(Sink):
    script = Path(__file__).resolve()


def sink_main() -> int:
    loop_name = install_uvloop()
    asyncio.run(sink_serve(loop_name))
    return 0


if __name__ == "__main__":
    sys.exit(sink_main())
