"""Where a benchmark runs: a fresh SQLite file, or a fresh database on a PostgreSQL server."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from hub.store.db import is_sqlite


async def _admin(server_url: str, sql: str) -> None:
    engine = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(sql))
    await engine.dispose()


@dataclass
class Target:
    url: str
    cleanup: Callable[[], None]
    where: str


def prepare_target(db: str | None, keep: bool) -> Target:
    if db is None or is_sqlite(db):
        if db is None:
            tmp = Path(tempfile.mkdtemp(prefix="crmhub-bench-"))
            path = tmp / "bench.db"
            url = f"sqlite+aiosqlite:///{path}"

            def cleanup() -> None:
                if not keep:
                    shutil.rmtree(tmp, ignore_errors=True)

        else:
            url = db
            path = Path(make_url(db).database or "")
            if path.exists():
                raise SystemExit(f"bench: {path} exists; the benchmark needs a fresh database")

            def cleanup() -> None:
                if not keep:
                    for suffix in ("", "-wal", "-shm"):
                        Path(f"{path}{suffix}").unlink(missing_ok=True)

        return Target(url, cleanup, str(path))
    name = f"crmhub_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(db, f'CREATE DATABASE "{name}"'))
    url = make_url(db).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        if not keep:
            asyncio.run(_admin(db, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    return Target(url, drop, f"PostgreSQL database {name}")
