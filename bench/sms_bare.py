"""The floor of bench/sms_webhook.py: a bare aiohttp + SQLite handler of signed SMS webhooks.

Runs in its own process, started by bench/sms_webhook.py as `sms_webhook.py
--bare --port P --db FILE`: it checks the signature as crmhub does (twilio's
RequestValidator, token from the environment), inserts one row per request
into its own SQLite file (WAL, synchronous=FULL) with group commit, and answers
after the commit with an empty TwiML <Response/>.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sqlite3
from typing import Any

from bench.sms_load import HOST, PATH, TOKEN_ENV

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response />'


def bare_main(args: argparse.Namespace) -> int:
    """aiohttp + RequestValidator + one row per request, group commit, answer after the commit."""
    from aiohttp import web
    from twilio.request_validator import RequestValidator

    validator = RequestValidator(os.environ[TOKEN_ENV])
    base = f"http://{HOST}:{args.port}"
    conn = sqlite3.connect(args.db, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS sms (sid TEXT PRIMARY KEY, sender TEXT, body TEXT)")
    queue: asyncio.Queue[tuple[tuple[str, str, str], asyncio.Future[None]]] = asyncio.Queue()

    def commit(rows: list[tuple[str, str, str]]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("INSERT OR IGNORE INTO sms VALUES (?, ?, ?)", rows)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def writer() -> None:
        while True:
            batch = [await queue.get()]
            while not queue.empty():
                batch.append(queue.get_nowait())
            try:
                await asyncio.to_thread(commit, [row for row, _ in batch])
            except Exception as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
            else:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_result(None)

    async def sms(request: web.Request) -> web.Response:
        form = await request.post()
        params = {k: v for k, v in form.items() if isinstance(v, str)}
        url = base + request.path_qs
        if not validator.validate(url, params, request.headers.get("X-Twilio-Signature", "")):
            return web.Response(status=403, text="bad signature")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.put_nowait(((params["MessageSid"], params["From"], params.get("Body", "")), fut))
        await fut
        return web.Response(text=EMPTY_TWIML, content_type="text/xml", charset="utf-8")

    async def readyz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def lifecycle(app: web.Application) -> Any:
        task = asyncio.create_task(writer())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app = web.Application()
    app.router.add_post(PATH, sms)
    app.router.add_get("/readyz", readyz)
    app.cleanup_ctx.append(lifecycle)
    # The same event loop as `crmhub serve` (uvloop), so the ratio compares like with like.
    import uvloop

    uvloop.install()
    web.run_app(app, host=HOST, port=args.port, access_log=None, print=None)
    conn.close()
    return 0
