"""Engines and sessions for SQLite (embedded) and PostgreSQL.

SQLite allows one writer at a time. A deferred transaction that reads and
then writes can fail with SQLITE_BUSY at once instead of waiting, so writes go
through `write()`, whose transactions start with BEGIN IMMEDIATE and wait
(busy_timeout) for the lock; reads go through `read()` and never block in WAL
mode. On PostgreSQL both are the same engine.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.config import DatabaseConfig

log = logging.getLogger(__name__)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_engine(url: str, echo: bool, immediate: bool) -> AsyncEngine:
    path = make_url(url).database
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30})

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy's "begin" hook below, which
        # also makes SAVEPOINT work with the sqlite3 driver.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit we acknowledged survives a power cut; group commit
        # keeps the fsync count low.
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class Database:
    def __init__(self, config: DatabaseConfig) -> None:
        self.url = config.url
        self.sqlite = is_sqlite(config.url)
        if self.sqlite:
            self.engine = _sqlite_engine(config.url, config.echo, immediate=False)
            self.write_engine = _sqlite_engine(config.url, config.echo, immediate=True)
        else:
            self.engine = create_async_engine(
                config.url,
                echo=config.echo,
                pool_size=config.pool_size,
                max_overflow=config.pool_size,
                pool_pre_ping=True,
            )
            self.write_engine = self.engine
        self._read = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)
        self._write = async_sessionmaker(
            self.write_engine, class_=AsyncSession, expire_on_commit=False
        )

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._read() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A session whose transaction commits on success and rolls back on error."""
        async with self._write() as session, session.begin():
            yield session

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:  # readiness probe: any failure means "not ready"
            log.warning("database ping failed", exc_info=True)
            return False

    async def close(self) -> None:
        await self.engine.dispose()
        if self.write_engine is not self.engine:
            await self.write_engine.dispose()
