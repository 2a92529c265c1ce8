"""Every route, fuzzed from our own OpenAPI document: never a 5xx, only documented answers.

schemathesis generates requests from hub/web/openapi.py's document, both
valid (positive) and invalid (negative) parameters, bodies and headers, and
sends them to a real server as the admin; webhooks are signed exactly as
Twilio signs them, so their parsers are fuzzed past the signature. Every
response must be a documented status with a documented content type and body
schema. A new route is fuzzed as soon as it is in the document, and
tests/api/test_access.py keeps every served route in the document.

Runs on SQLite, and on PostgreSQL in the `-m db` run (which refuses NUL
characters and 64-bit ids that SQLite takes). Deterministic (derandomized) and
bounded for CI; `CRMHUB_FUZZ_EXAMPLES=500 pytest tests/web/test_fuzz.py`
searches harder.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests
import schemathesis.openapi
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from hub.records.auth import create_user, issue_token
from hub.runtime import Hub
from hub.store.models import Role
from hub.web.app import create_app
from hub.web.openapi import build_document
from tests.support.hubs import make_settings
from tests.support.sms import PUBLIC, TOKEN, signature_of

EXAMPLES = int(os.environ.get("CRMHUB_FUZZ_EXAMPLES", "30"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
LOGOUT = "DELETE /api/v1/auth/token"


class Server:
    """A hub and its app on a free port, in a thread with its own event loop."""

    def __init__(self, url: str) -> None:
        sms = {"enabled": True, "auth_token": TOKEN, "public_url": PUBLIC}
        self.settings = make_settings(url, sms=sms)
        # Unique: the database may hold users of other tests (PostgreSQL run).
        self.admin = f"fuzz-{uuid.uuid4().hex[:8]}"
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0
        self.hub: Hub | None = None
        self._stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(),))

    async def _main(self) -> None:
        self.hub = Hub(self.settings, dispatch=False)
        await self.hub.start()
        await create_user(self.hub.db, self.admin, role=Role.ADMIN, teams=[])
        runner = web.AppRunner(create_app(self.hub, manage_hub=False))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = runner.addresses[0][1]
        self._stop = asyncio.Event()
        self.ready.set()
        await self._stop.wait()
        await runner.cleanup()
        await self.hub.stop()

    def token(self) -> str:
        """A new admin token (logging out ends the one it is sent with)."""
        assert self.hub is not None
        future = asyncio.run_coroutine_threadsafe(issue_token(self.hub.db, self.admin), self.loop)
        return future.result(30)

    def __enter__(self) -> Server:
        self.thread.start()
        assert self.ready.wait(60), "the fuzz server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(60)


@pytest.fixture(scope="module")
def server(db_url: str) -> Iterator[Server]:
    with Server(db_url) as running:
        yield running


def _signed(case: Any, base: str, headers: dict[str, str]) -> dict[str, str]:
    """The headers plus X-Twilio-Signature over exactly the URL and form that will be sent."""
    kwargs = case.as_transport_kwargs(base_url=base, headers=headers)
    kwargs.pop("json", None)
    prepared = requests.Request(**kwargs).prepare()
    body = prepared.body or ""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    # As the server reads it: a repeated field keeps its last value.
    form = dict(parse_qsl(body, keep_blank_values=True))
    return {**headers, "X-Twilio-Signature": signature_of(form, PUBLIC + prepared.path_url)}


def _fuzz(
    operation: Any, mode: GenerationMode, server: Server, seen: Counter[tuple[str, int]]
) -> list[str]:
    base = f"http://127.0.0.1:{server.port}"
    token = server.token()
    problems: list[str] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        bearer = server.token() if operation.label == LOGOUT else token
        headers = {"Authorization": f"Bearer {bearer}"}
        if case.path.startswith("/webhooks/twilio/"):
            headers = _signed(case, base, headers)
        response = case.call(base_url=base, headers=headers, timeout=30)
        seen[(operation.label, response.status_code)] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except (AssertionError, FailureGroup) as exc:  # one failed check, or several
            failures = exc.exceptions if isinstance(exc, FailureGroup) else (exc,)
            first = "; ".join(getattr(f, "title", type(f).__name__) for f in failures)
            problems.append(
                f"{mode.value}: {case.method} {case.formatted_path} query={case.query!r} "
                f"body={str(case.body)[:120]!r} -> {response.status_code} "
                f"{response.text[:200]!r}: {first}"
            )

    # Unsatisfiable: nothing to make invalid (an operation without parameters or body).
    with contextlib.suppress(Unsatisfiable):
        check()
    return problems


def test_no_route_answers_a_5xx_or_anything_undocumented(server: Server) -> None:
    document = build_document("fuzz", server.settings)
    operations = [r.ok() for r in schemathesis.openapi.from_dict(document).get_all_operations()]
    assert len(operations) >= 25  # every route, webhooks included
    seen: Counter[tuple[str, int]] = Counter()
    problems = [
        problem
        for operation in operations
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        for problem in _fuzz(operation, mode, server, seen)
    ]
    assert problems == []

    # The fuzz reached every handler: an operation that only ever answered 401
    # or 403 was never fuzzed (a logged-out token); a webhook that never said
    # 2xx never got past its signature (or its form was never valid).
    def reached(label: str, status: int) -> bool:
        if label.startswith("POST /webhooks/twilio/sms"):
            return 200 <= status < 300
        if label.startswith("POST /webhooks/"):
            # Voice webhooks are off here (no provider secrets): fuzzed for 5xx only;
            # their parsers get garbage from hypothesis in tests/channels/voice/.
            return True
        return status not in (401, 403)

    unreached = sorted(
        op.label
        for op in operations
        if not any(reached(op.label, s) for (lb, s) in seen if lb == op.label)
    )
    assert unreached == []
