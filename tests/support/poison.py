"""A real database refusal for one row (a plugin: ingest and email tests both use it)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from hub.store.db import Database


@pytest.fixture
async def poison_trigger(db: Database) -> AsyncIterator[None]:
    """A real database refusal for one row: inserts with subject 'poison' fail."""
    async with db.write_engine.begin() as conn:
        if db.sqlite:
            await conn.execute(
                text(
                    "CREATE TRIGGER poison BEFORE INSERT ON interaction "
                    "WHEN NEW.subject = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned'); END"
                )
            )
        else:
            await conn.execute(
                text(
                    "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN "
                    "IF NEW.subject = 'poison' THEN RAISE EXCEPTION 'poisoned'; END IF; "
                    "RETURN NEW; END $$ LANGUAGE plpgsql"
                )
            )
            await conn.execute(
                text(
                    "CREATE TRIGGER poison BEFORE INSERT ON interaction "
                    "FOR EACH ROW EXECUTE FUNCTION poison()"
                )
            )
    yield
    async with db.write_engine.begin() as conn:
        await conn.execute(text("DROP TRIGGER poison" + ("" if db.sqlite else " ON interaction")))
        if not db.sqlite:
            await conn.execute(text("DROP FUNCTION poison()"))
