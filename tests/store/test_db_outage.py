"""`is_outage`: a database that is away is retried later; a bug is not.

Each case makes the real driver raise the real error: a locked SQLite file,
a PostgreSQL role over its connection limit, a killed backend, a server
that is not listening, and bugs (bad SQL, too many query arguments).
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from hub.store.db import Database, is_outage

pytestmark = pytest.mark.db


async def _error_of(url: str, sql: str, params: dict[str, object] | None = None) -> Exception:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(sql), params or {})
    except Exception as exc:
        return exc
    finally:
        await engine.dispose()
    raise AssertionError("no error")


async def test_bugs_are_not_outages(db: Database, db_url: str) -> None:
    assert not is_outage(await _error_of(db_url, "SELEC 1"))
    assert not is_outage(await _error_of(db_url, "SELECT no_such_column FROM customer"))
    if not db.sqlite:
        # asyncpg refuses this client-side (an InterfaceError): a bug, not an outage.
        many = {f"p{i}": i for i in range(33_000)}
        sql = "SELECT " + ", ".join(f":p{i}" for i in range(33_000))
        assert not is_outage(await _error_of(db_url, sql, many))


async def test_nothing_listening_is_an_outage() -> None:
    err = await _error_of("postgresql+asyncpg://postgres@127.0.0.1:1/crmhub", "SELECT 1")
    assert is_outage(err)


async def test_a_locked_sqlite_file_is_an_outage(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.commit()
    holder.execute("BEGIN EXCLUSIVE")
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}", connect_args={"timeout": 0.05})
    try:
        with pytest.raises(Exception) as caught:
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO t VALUES (1)"))
    finally:
        await engine.dispose()
        holder.rollback()
        holder.close()
    assert "database is locked" in str(caught.value)
    assert is_outage(caught.value)


async def test_postgresql_refusing_connections_is_an_outage(db: Database, db_url: str) -> None:
    if db.sqlite:
        pytest.skip("PostgreSQL's connection limits")
    role = f"crmhub_full_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(db_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 0'))
        url = make_url(db_url).set(username=role).render_as_string(hide_password=False)
        err = await _error_of(url, "SELECT 1")
        assert "too many connections" in str(err)
        assert is_outage(err)
        # A backend killed under a transaction (a restart, a failover).
        killed = await _error_of(db_url, "SELECT pg_terminate_backend(pg_backend_pid())")
        assert is_outage(killed)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        await admin.dispose()
