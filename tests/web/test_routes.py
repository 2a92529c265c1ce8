"""Every route the app serves is in the OpenAPI document.

The route fuzzer (test_fuzz.py) and the query parameter check
(hub/web/query_check.py) both work from the document: a route missing from it
would be neither fuzzed nor checked.
"""

from __future__ import annotations

import pytest

from hub.runtime import Hub
from hub.web.app import create_app
from hub.web.openapi import build_document
from tests.support.api import Api, console_route
from tests.support.hubs import make_settings
from tests.support.sms import SMS


def test_every_route_is_documented() -> None:
    settings = make_settings("sqlite+aiosqlite:///:memory:", sms=SMS)
    app = create_app(Hub(settings), manage_hub=False)
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
        and route.method != "HEAD"  # HEAD comes with GET
        and not console_route(route)  # HTML pages, not the API
    }
    document = build_document("test", settings)
    documented = {(m, path) for path, ops in document["paths"].items() for m in ops}
    assert served == documented


def _api_operations() -> list[tuple[str, str]]:
    settings = make_settings("sqlite+aiosqlite:///:memory:", sms=SMS)
    paths = build_document("test", settings)["paths"]
    return [
        (method.upper(), path)
        for path, ops in paths.items()
        if path.startswith("/api/") or path in ("/healthz", "/readyz")
        for method in ops
    ]


@pytest.mark.parametrize(("method", "path"), _api_operations(), ids=" ".join)
async def test_every_api_route_refuses_a_query_parameter_it_does_not_take(
    api: Api, method: str, path: str
) -> None:
    """Checked before the handler runs: nothing is read, changed or deleted."""
    concrete = path.replace("{id}", "1").replace("{other}", "2")
    status, body = await api.call(method, f"{concrete}?typo=1")
    assert status == 400
    assert body["detail"].startswith("unknown query parameter typo (this route takes: ")
