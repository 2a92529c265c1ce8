"""Every route, fuzzed from our own OpenAPI document: never a 5xx, only documented statuses.

schemathesis generates requests from hub/web/openapi.py's document (valid
and invalid parameters, bodies and headers) and sends them to a real
server on SQLite, as the admin. A new route is fuzzed as soon as it is in
the document, so it cannot bring a 500 back. Deterministic (derandomized)
and bounded for CI; `CRMHUB_FUZZ_EXAMPLES=500 pytest tests/web/test_fuzz.py`
searches harder.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis.openapi
from aiohttp import web
from hypothesis import HealthCheck, given, settings

from hub.records.auth import create_user, issue_token
from hub.runtime import Hub
from hub.store.migrate import upgrade
from hub.store.models import Role
from hub.web.app import create_app
from hub.web.openapi import build_document
from tests.support.hubs import make_settings

EXAMPLES = int(os.environ.get("CRMHUB_FUZZ_EXAMPLES", "30"))


class Server:
    """A hub and its app on a free port, in a thread with its own event loop."""

    def __init__(self, db_path: Path) -> None:
        url = f"sqlite+aiosqlite:///{db_path}"
        upgrade(url)
        self.settings = make_settings(
            url, sms={"enabled": True, "auth_token": "fuzz-token", "public_url": "http://x"}
        )
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0
        self.token = ""
        self._stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(),))

    async def _main(self) -> None:
        hub = Hub(self.settings, dispatch=False)
        await hub.start()
        await create_user(hub.db, "admin", role=Role.ADMIN, teams=[])
        self.token = await issue_token(hub.db, "admin")
        runner = web.AppRunner(create_app(hub, manage_hub=False))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = runner.addresses[0][1]
        self._stop = asyncio.Event()
        self.ready.set()
        await self._stop.wait()
        await runner.cleanup()
        await hub.stop()

    def __enter__(self) -> Server:
        self.thread.start()
        assert self.ready.wait(30), "the fuzz server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(30)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with Server(tmp_path_factory.mktemp("fuzz") / "fuzz.db") as running:
        yield running


def _operations(server: Server) -> list[Any]:
    document = build_document("fuzz", server.settings)
    schema = schemathesis.openapi.from_dict(document)
    return [result.ok() for result in schema.get_all_operations()]


def _fuzz(operation: Any, base: str, headers: dict[str, str], problems: list[str]) -> None:
    documented = {int(code) for code in operation.definition.raw["responses"]}

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        response = case.call(base_url=base, headers=headers, timeout=30)
        status = response.status_code
        if status >= 500 or status not in documented:
            problems.append(
                f"{case.method} {case.formatted_path} -> {status}: {response.text[:200]}"
            )

    check()


def test_no_route_answers_a_5xx_or_an_undocumented_status(server: Server) -> None:
    base = f"http://127.0.0.1:{server.port}"
    headers = {"Authorization": f"Bearer {server.token}"}
    problems: list[str] = []
    operations = _operations(server)
    assert len(operations) >= 20  # every route, webhooks included
    for operation in operations:
        _fuzz(operation, base, headers, problems)
    assert problems == []
