"""The Alembic migrations and the models describe the same schema, on both backends."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import hub.store.models  # noqa: F401  (registers the tables)
from hub.store.db import Database
from hub.store.migrate import current_heads


def _diff(conn: Connection) -> list[object]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, SQLModel.metadata))


async def test_migrated_schema_matches_the_models(db: Database) -> None:
    async with db.engine.connect() as conn:
        assert await conn.run_sync(_diff) == []
        version = (await conn.exec_driver_sql("SELECT version_num FROM alembic_version")).scalar()
    assert (version,) == current_heads()


async def test_customers_and_conversations_leave_room_for_updates_in_place(db: Database) -> None:
    """PostgreSQL only: with free room on each page, the last-contact updates every
    contact makes are HOT (no new entry in the six customer indexes); SQLite has no
    such setting."""
    if db.sqlite:
        pytest.skip("a PostgreSQL storage parameter")
    async with db.engine.connect() as conn:
        rows = await conn.exec_driver_sql(
            "SELECT relname, reloptions FROM pg_class"
            " WHERE relname IN ('customer', 'conversation', 'interaction') ORDER BY relname"
        )
        assert [tuple(r) for r in rows] == [
            ("conversation", ["fillfactor=85"]),
            ("customer", ["fillfactor=85"]),
            ("interaction", None),
        ]
