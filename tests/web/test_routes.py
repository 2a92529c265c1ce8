"""Every API route refuses a query parameter it does not take.

The query parameter check (hub/web/query_check.py) works from the OpenAPI
document, which holds every served route (tests/api/test_access.py), so a
typo in a filter is a 400 on each of them, never a silently wider answer.
"""

from __future__ import annotations

import pytest

from hub.web.openapi import build_document
from tests.support.api import Api
from tests.support.hubs import make_settings
from tests.support.sms import SMS


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
