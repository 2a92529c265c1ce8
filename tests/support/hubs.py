"""Settings and running hubs for tests: the base test config, a hub with a test's own
routing step, and a hub whose outbox rounds the test runs itself."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from hub.config import Settings, load_settings
from hub.runtime import Hub
from routing.base import Step
from routing.registry import applies_to

EMPTY_CONFIG = Path(__file__).parent.parent / "empty.yaml"


def make_settings(db_url: str, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "database": {"url": db_url},
        # scrypt at 2^12, not the default 2^17: hundreds of test users, same code.
        "auth": {"password_cost": 12},
        # The campaign scheduler starts only where a test asks for it (tests/campaigns).
        "campaigns": {"scheduler": False},
        "teams": {
            "default": "Support",
            "by_address": {"sales@example.com": "Sales", "+49 30 5550100": "Sales"},
        },
    }
    base.update(overrides)
    return load_settings(EMPTY_CONFIG, **base)


@asynccontextmanager
async def hub_with_step(settings: Settings, step: Callable[[], Step]) -> AsyncIterator[Hub]:
    """A running hub whose routing runs `step` (a test's own, or a built-in one) before
    threading, on every channel it applies to."""
    name = step().name
    pipelines = settings.routing.pipelines.model_copy(
        update={
            c: [name, "thread_conversation"] if c in applies_to(name) else ["thread_conversation"]
            for c in type(settings.routing.pipelines).model_fields
        }
    )
    routing = settings.routing.model_copy(update={"pipelines": pipelines})
    running = Hub(settings.model_copy(update={"routing": routing}), extra_steps={name: step})
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


@asynccontextmanager
async def manual_dispatch(settings: Settings) -> AsyncIterator[Hub]:
    """A running hub whose outbox rounds the test runs itself (`hub.dispatcher.run_once()`),
    so what was sent when is exact and no background round races the test."""
    running = Hub(settings)

    async def rounds_run_by_the_test() -> None:
        return None

    running.dispatcher.start = rounds_run_by_the_test  # type: ignore[method-assign]
    await running.start()
    try:
        yield running
    finally:
        await running.stop()  # closes the senders (SMTP pools)


async def drain_outbox(settings: Settings, max_per_hour: dict[str, int]) -> int:
    """A fresh dispatcher node (as after a restart) with these hourly windows runs until
    it finds nothing to do; how many rows it handled."""
    from hub.outbox.dispatcher import Dispatcher
    from hub.outbox.queue import senders_from
    from hub.store.db import Database

    config = settings.outbox.model_copy(update={"max_per_hour": max_per_hour})
    node = Dispatcher(Database(settings.database), config, senders_from(settings))
    handled = 0
    try:
        while done := await node.run_once():
            handled += done
    finally:
        await node.stop()
        await node.db.close()
    return handled
