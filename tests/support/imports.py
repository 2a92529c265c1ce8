"""Helpers shared by the import, export and CLI tests (tests/data/); their `config`
fixture is in tests/data/conftest.py."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import select

from hub.cli import main as cli
from hub.data.importer import ImportSummary, import_customers
from hub.store.db import Database
from hub.store.models import Customer, Identity, Team, User


async def rows(db: Database, stmt: Any) -> list[tuple[Any, ...]]:
    async with db.read() as s:
        return [tuple(r) for r in (await s.exec(stmt)).all()]


async def ids(db: Database, table: Any, column: Any) -> dict[str, int]:
    return dict(await rows(db, select(column, table.id)))


async def seed_staff(db: Database) -> None:
    async with db.write() as s:
        s.add_all([User(username="anna"), User(username="ben"), Team(name="Sales")])


async def add_customer(db: Database, *identities: tuple[str, str], **fields: Any) -> int:
    async with db.write() as s:
        customer = Customer(**fields)
        s.add(customer)
        await s.flush()
        assert customer.id is not None
        for n, (kind, value) in enumerate(identities):
            s.add(
                Identity(customer_id=customer.id, kind=kind, value=value, raw=value, primary=n == 0)
            )
        return customer.id


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


async def run(db: Database, path: Path, **kw: Any) -> ImportSummary:
    return await import_customers(db, path, region="DE", **kw)


async def crmhub(argv: list[str]) -> int:
    """The console script, in a thread: it runs its own event loop."""
    return await asyncio.to_thread(cli.main, argv)
