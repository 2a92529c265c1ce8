"""A local aiohttp server that answers like Twilio's Messages and Calls REST APIs.

The real `twilio` library talks to it (base URL pointed here), so a test sees
exactly the form twilio sends on the wire. `fail_next` makes the next N
requests answer like Twilio does when it refuses: 400 with a Twilio error
code (21610: the recipient texted STOP), 429, 500.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

ACCOUNT_SID = "AC" + "a" * 32
MESSAGES_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"


@dataclass
class Recorded:
    path: str
    form: dict[str, str]
    auth: str | None


@dataclass
class TwilioFake:
    requests: list[Recorded] = field(default_factory=list)
    _failures: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    _sids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    base_url: str = ""

    def fail_next(
        self, times: int, status: int, code: int | None = None, *, problem: bool = False
    ) -> None:
        """`problem`: answer in RFC 9457 problem details, as Twilio's newer APIs do."""
        body: dict[str, Any] = {"status": status, "message": f"fake error {status}"}
        if code is not None:
            body |= {"code": code, "more_info": f"https://www.twilio.com/docs/errors/{code}"}
        if problem:
            body = {
                "type": f"https://www.twilio.com/docs/errors/{code}",
                "title": "Fake problem",
                "status": status,
                "code": code,
                "detail": f"fake problem {status}",
            }
        self._failures.extend([(status, body)] * times)

    async def messages(self, request: web.Request) -> web.Response:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        self.requests.append(Recorded(request.path, form, request.headers.get("Authorization")))
        if self._failures:
            status, body = self._failures.pop(0)
            return web.json_response(body, status=status)
        sid = f"SM{next(self._sids):032x}"
        answer = {
            "sid": sid,
            "account_sid": request.match_info["account"],
            "to": form.get("To"),
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "body": form.get("Body"),
            "status": "queued" if "From" in form else "accepted",
            "num_segments": "1",
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "price": None,
            "error_code": None,
            "error_message": None,
            "uri": f"/2010-04-01/Accounts/{request.match_info['account']}/Messages/{sid}.json",
        }
        return web.Response(status=201, text=json.dumps(answer), content_type="application/json")

    async def calls(self, request: web.Request) -> web.Response:
        """The Calls API: records the form (To, From, Twiml, StatusCallback...), answers 201."""
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        events = request.query.getall("StatusCallbackEvent", [])
        posted = await request.post()
        form["StatusCallbackEvent"] = " ".join(
            [str(v) for v in posted.getall("StatusCallbackEvent", [])] + list(events)
        )
        self.requests.append(Recorded(request.path, form, request.headers.get("Authorization")))
        if self._failures:
            status, body = self._failures.pop(0)
            return web.json_response(body, status=status)
        sid = f"CA{next(self._sids):032x}"
        account = request.match_info["account"]
        answer = {
            "sid": sid,
            "account_sid": account,
            "to": form.get("To"),
            "from": form.get("From"),
            "status": "queued",
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{account}/Calls/{sid}.json",
        }
        return web.Response(status=201, text=json.dumps(answer), content_type="application/json")


@asynccontextmanager
async def twilio_fake() -> AsyncIterator[TwilioFake]:
    fake = TwilioFake()
    app = web.Application()
    app.router.add_post("/2010-04-01/Accounts/{account}/Messages.json", fake.messages)
    app.router.add_post("/2010-04-01/Accounts/{account}/Calls.json", fake.calls)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.base_url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()
