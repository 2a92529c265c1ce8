"""WAL checkpoints in the background: commits never checkpoint while a hub runs."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from sqlalchemy import insert, text

from hub.store.checkpoint import WalCheckpointer
from hub.store.db import SQLITE_WAL_AUTOCHECKPOINT, Database
from hub.store.tables import team_t

pytestmark = pytest.mark.db


async def _autocheckpoint(db: Database) -> int:
    async with db.write_engine.connect() as conn:
        return int((await conn.execute(text("PRAGMA wal_autocheckpoint"))).scalar_one())


async def test_the_checkpointer_copies_the_log_and_commits_do_not(db: Database) -> None:
    checkpoints = WalCheckpointer(db, every=0.02)
    await checkpoints.start()
    try:
        if db.sqlite_path is None:  # PostgreSQL: nothing to do, nothing started
            assert checkpoints.runs == 0
            return
        assert await _autocheckpoint(db) == 0
        async with db.write_engine.begin() as conn:
            await conn.execute(insert(team_t), [{"name": f"T{i}"} for i in range(200)])
        before = checkpoints.runs
        for _ in range(500):
            if checkpoints.runs >= before + 2:
                break
            await asyncio.sleep(0.01)
        assert checkpoints.runs >= before + 2
        # Every frame of the log is in the database file: a checkpoint has nothing left.
        other = sqlite3.connect(db.sqlite_path)
        try:
            busy, frames, copied = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            other.close()
        assert (busy, frames) == (0, copied)
    finally:
        await checkpoints.stop()
    assert await _autocheckpoint(db) == SQLITE_WAL_AUTOCHECKPOINT  # a bare Database again
