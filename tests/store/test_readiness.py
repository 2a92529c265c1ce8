"""/readyz is ready only when a write commits, not merely when a SELECT answers."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

import hub.web.app
from hub.store.db import LOCK_WAIT_SECONDS
from hub.web.auth import HUB

pytestmark = pytest.mark.db


async def test_lock_waits_stay_below_twilios_webhook_timeout() -> None:
    assert LOCK_WAIT_SECONDS < 15


async def test_a_held_write_lock_makes_the_node_not_ready(
    api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub.web.app, "READY_WRITE_SECONDS", 0.3)
    assert await api.call("GET", "/readyz", None) == (200, {"status": "ready"})
    db = api.client.app[HUB].db
    async with db.write() as s:
        # Another writer holds the lock (a long import, a stuck transaction).
        conn = await s.connection()
        if db.sqlite:
            await conn.execute(text("UPDATE health_probe SET id = id"))
        else:
            await conn.execute(text("LOCK TABLE health_probe IN ACCESS EXCLUSIVE MODE"))
        status, body = await api.call("GET", "/readyz", None)
    assert (status, body) == (
        503,
        {
            "error": "not_ready",
            "detail": "database cannot take writes: "
            "a write did not commit within 0.3 s (locked or stalled)",
        },
    )
    assert await api.call("GET", "/readyz", None) == (200, {"status": "ready"})
