"""Customer and history export as CSV or JSON Lines (`crmhub export`).

Rows are read in pages by id (keyset paging), so memory stays flat however
large the tables are. The whole export runs in one read transaction, which
gives one consistent snapshot: SQLite's WAL reader keeps the snapshot of its
first read, and PostgreSQL gets REPEATABLE READ for the same effect.

The customer CSV is the importer's input format: `crmhub import customers`
reads it back (the record's own columns `id`, `kind` and the timestamps are
ignored there). Custom fields become `x_<name>` columns; a CSV needs them all
in its header, so the CSV export first collects their names in the same
snapshot. JSON Lines keeps lists and custom values in their JSON types.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TextIO

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.data.csv_cells import neutralise
from hub.records.consent import consent_in_force
from hub.store.db import Database
from hub.store.models import IdentityKind
from hub.store.tables import customer_t, identity_t, interaction_t, tag_t, team_t, user_t

PAGE_ROWS = 1000
CUSTOMER_HEAD = (
    "id",
    "kind",
    "name",
    "company",
    "emails",
    "phones",
    "postal_code",
    "city",
    "country",
    "industry",
    "tags",
    "owner",
    "team",
    "notes",
)
# consent: the state in force per channel and purpose, with source and time
# ("sms/marketing=opted_out by twilio STOP at 2026-...").
CUSTOMER_TAIL = ("consent", "created_at", "updated_at", "last_inbound_at", "last_outbound_at")
HISTORY_COLUMNS = (
    "id",
    "customer_id",
    "conversation_id",
    "channel",
    "direction",
    "occurred_at",
    "subject",
    "text",
    "provider_id",
    "sender",
    "recipient",
    "delivery_status",
    "meta",
)
FORMATS = ("csv", "jsonl")


Record = dict[str, Any]


class ExportError(Exception):
    """The export cannot start; the message is one line for the user."""


@asynccontextmanager
async def _snapshot(db: Database) -> AsyncIterator[AsyncConnection]:
    async with db.engine.connect() as conn:
        if not db.sqlite:
            await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            yield conn


async def export_customers(db: Database, out: TextIO, fmt: str = "csv") -> int:
    """Write every customer except merged tombstones; return how many."""
    async with _snapshot(db) as conn:
        if fmt == "jsonl":
            return await _write_jsonl(out, _customers(conn), _customer_json)
        names = await _custom_names(conn)
        columns = [*CUSTOMER_HEAD, *(f"x_{name}" for name in names), *CUSTOMER_TAIL]
        return await _write_csv(out, columns, _customers(conn), _customer_cells)


async def export_history(
    db: Database, out: TextIO, fmt: str = "csv", customer_id: int | None = None
) -> int:
    """Write interactions in id order, of one customer or of all; return how many."""
    async with _snapshot(db) as conn:
        if customer_id is not None:
            found = await conn.scalar(select(customer_t.c.id).where(customer_t.c.id == customer_id))
            if found is None:
                raise ExportError(f"no customer with id {customer_id}")
        if fmt == "jsonl":
            return await _write_jsonl(out, _interactions(conn, customer_id), _history_json)
        return await _write_csv(
            out, HISTORY_COLUMNS, _interactions(conn, customer_id), _history_cells
        )


# -- reading -----------------------------------------------------------------


def _live() -> Any:
    return customer_t.c.merged_into_id.is_(None)


async def _custom_names(conn: AsyncConnection) -> list[str]:
    names: set[str] = set()
    result = await conn.stream(
        select(customer_t.c.custom).where(_live()).execution_options(yield_per=PAGE_ROWS)
    )
    async for (custom,) in result:
        names.update(custom or ())
    return sorted(names)


async def _customers(conn: AsyncConnection) -> AsyncIterator[Record]:
    last = 0
    while True:
        page = (
            await conn.execute(
                select(
                    customer_t,
                    user_t.c.username.label("owner"),
                    team_t.c.name.label("team"),
                )
                .outerjoin(user_t, user_t.c.id == customer_t.c.owner_id)
                .outerjoin(team_t, team_t.c.id == customer_t.c.team_id)
                .where(_live(), customer_t.c.id > last)
                .order_by(customer_t.c.id)
                .limit(PAGE_ROWS)
            )
        ).all()
        if not page:
            return
        ids = [row.id for row in page]
        identities: dict[tuple[int, str], list[str]] = defaultdict(list)
        result = await conn.execute(
            select(identity_t.c.customer_id, identity_t.c.kind, identity_t.c.value)
            .where(identity_t.c.customer_id.in_(ids))
            .order_by(identity_t.c["primary"].desc(), identity_t.c.id)
        )
        for r in result:
            identities[(r.customer_id, r.kind)].append(r.value)
        tags: dict[int, list[str]] = defaultdict(list)
        result = await conn.execute(
            select(tag_t.c.customer_id, tag_t.c.tag)
            .where(tag_t.c.customer_id.in_(ids))
            .order_by(tag_t.c.tag)
        )
        for r in result:
            tags[r.customer_id].append(r.tag)
        consent = await consent_in_force(conn, ids)
        for row in page:
            record = dict(row._mapping)
            record["consent"] = consent.get(row.id, [])
            record["emails"] = identities[(row.id, IdentityKind.EMAIL.value)]
            record["phones"] = identities[(row.id, IdentityKind.PHONE.value)]
            record["tags"] = tags[row.id]
            yield record
        last = ids[-1]


async def _interactions(conn: AsyncConnection, customer_id: int | None) -> AsyncIterator[Record]:
    last = 0
    while True:
        stmt = select(*(interaction_t.c[name] for name in HISTORY_COLUMNS)).where(
            interaction_t.c.id > last
        )
        if customer_id is not None:
            stmt = stmt.where(interaction_t.c.customer_id == customer_id)
        page = (await conn.execute(stmt.order_by(interaction_t.c.id).limit(PAGE_ROWS))).all()
        if not page:
            return
        for row in page:
            yield dict(row._mapping)
        last = page[-1].id


# -- writing -----------------------------------------------------------------


def _text(value: Any) -> str:
    """One CSV cell: text as it is, times in ISO 8601, anything else as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return ";".join(_text(item) for item in value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _consent_text(items: list[Record]) -> str:
    return ";".join(
        f"{c['channel']}/{c['purpose']}={c['state']} ({c['source']}, {c['recorded_at']})"
        for c in items
    )


def _customer_cells(record: Record, columns: list[str]) -> list[str]:
    custom = record["custom"] or {}
    return [
        _consent_text(record["consent"])
        if name == "consent"
        else _text(custom.get(name[2:]) if name.startswith("x_") else record[name])
        for name in columns
    ]


def _customer_json(record: Record) -> Record:
    out = {name: record[name] for name in CUSTOMER_HEAD}
    out.update({f"x_{k}": v for k, v in sorted((record["custom"] or {}).items())})
    out["consent"] = record["consent"]
    out.update({name: _iso(record[name]) for name in CUSTOMER_TAIL if name != "consent"})
    return out


def _history_cells(record: Record, columns: list[str]) -> list[str]:
    return [_text(record[name]) for name in columns]


def _history_json(record: Record) -> Record:
    return {**record, "occurred_at": _iso(record["occurred_at"])}


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


async def _write_csv(
    out: TextIO,
    columns: tuple[str, ...] | list[str],
    records: AsyncIterator[Record],
    cells: Callable[[Record, list[str]], list[str]],
) -> int:
    names = list(columns)
    # CRLF (RFC 4180): with "\n" the csv module leaves a cell with a lone "\r"
    # unquoted, and an SMS with a carriage return broke the file.
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(names)
    count = 0
    async for record in records:
        writer.writerow([neutralise(cell) for cell in cells(record, names)])
        count += 1
    return count


async def _write_jsonl(
    out: TextIO, records: AsyncIterator[Record], convert: Callable[[Record], Record]
) -> int:
    count = 0
    async for record in records:
        out.write(json.dumps(convert(record), ensure_ascii=False) + "\n")
        count += 1
    return count
