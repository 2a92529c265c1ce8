"""The privacy tests' hub: admin token, suppression key, SMS enabled, attachments on disk."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from hub.config import Settings
from hub.records.auth import create_user, issue_token
from hub.runtime import Hub
from hub.store.db import Database
from hub.store.models import Role
from hub.web.app import create_app
from tests.support.hubs import make_settings

KEY = "test-suppression-key-0123456789"


@pytest.fixture
async def erasing(
    db_url: str, db: Database, tmp_path: Path
) -> AsyncIterator[tuple[Hub, TestClient[Any, Any], str]]:
    settings: Settings = make_settings(
        db_url,
        privacy={"suppression_key": KEY},
        email={"attachments_dir": str(tmp_path / "att")},
        sms={
            "enabled": True,
            "auth_token": "t",
            "public_url": "http://x",
            "account_sid": "AC1",
            "from_number": "+4930555000",
        },
    )
    hub = Hub(settings)
    await hub.start()
    await create_user(hub.db, "root", role=Role.ADMIN, teams=[])
    token = await issue_token(hub.db, "root")
    client = TestClient(TestServer(create_app(hub, manage_hub=False)))
    await client.start_server()
    yield hub, client, token
    await client.close()
    await hub.stop()
