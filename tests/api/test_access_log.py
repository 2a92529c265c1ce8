"""The access log of a served request leaves phone numbers, emails and search terms out."""

from __future__ import annotations

import logging

import pytest
from aiohttp.test_utils import TestClient, TestServer

from hub.config import ServerConfig
from hub.runtime import Hub
from hub.web.access_log import runner_options
from hub.web.app import create_app
from tests.support.api import Api

pytestmark = pytest.mark.db

QUERY = "/api/v1/lookup?phone=%2B4930123456"


async def _logged(
    api: Api, hub: Hub, server: ServerConfig, caplog: pytest.LogCaptureFixture
) -> str:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    test_server = TestServer(create_app(hub, manage_hub=False))
    # TestServer passes runner arguments through start_server, not its constructor.
    await test_server.start_server(**runner_options(server))
    client = TestClient(test_server)
    await client.start_server()
    try:
        resp = await client.get(QUERY, headers={"Authorization": f"Bearer {api.tokens['agent']}"})
        assert resp.status == 200
    finally:
        await client.close()
    [line] = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    return line


async def test_the_query_string_stays_out_of_the_access_log_by_default(
    api: Api, hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    line = await _logged(api, hub, ServerConfig(), caplog)
    assert '"GET /api/v1/lookup HTTP/1.1" 200' in line
    assert "4930123456" not in line and "phone" not in line


async def test_access_log_query_puts_it_back_for_debugging(
    api: Api, hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    line = await _logged(api, hub, ServerConfig(access_log_query=True), caplog)
    assert f'"GET {QUERY} HTTP/1.1" 200' in line
