"""Stopping the ingest writer: what was queued is stored, what comes after is refused."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.runtime import Hub


async def test_stop_stores_what_was_queued_and_refuses_what_comes_after(hub: Hub) -> None:
    ingestor = hub.ingestor
    written: list[str] = []

    def writer(name: str):  # type: ignore[no-untyped-def]
        async def write(_conn: AsyncConnection) -> None:
            written.append(name)

        return write

    queued = asyncio.ensure_future(ingestor.write_through(writer("before")))
    await asyncio.sleep(0)  # in the queue
    stopping = asyncio.ensure_future(ingestor.stop())
    await asyncio.sleep(0)  # stop has begun
    with pytest.raises(RuntimeError):
        await asyncio.wait_for(ingestor.write_through(writer("after")), 10)
    # Bounded waits: before the fix a write queued at this moment was never answered.
    await asyncio.wait_for(stopping, 10)
    await asyncio.wait_for(queued, 10)
    assert written == ["before"]
