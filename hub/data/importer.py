"""Bulk customer import from CSV or JSON Lines (`crmhub import customers`).

The file is read twice. The first pass checks that it can be imported at all
(readable, UTF-8, well-formed CSV, only known columns), so that a file-level
problem stops the import before anything is written. The second pass imports
it in chunks of rows, one transaction each, with a few bulk lookups and
multi-row inserts per chunk instead of a round trip per row: that is what
keeps 100,000 rows well inside a minute on SQLite, and it lets the inbound
pipeline's writer get the SQLite lock between chunks.

Rows are matched to customers by identity only (any normalised email or
phone). Where the issue was silent:

- a team named in a row must exist; only the `--team` default is created. The
  default applies to new customers; an existing customer keeps its team
  unless the row names one;
- the columns the export adds about the stored record (`id`, `kind`,
  timestamps) are accepted and ignored, so that an export re-imports;
- a row needs a name, a company, an email or a phone; without an email or a
  phone it cannot be matched, so importing it again creates it again;
- a row using an identity that an earlier row of the file used is rejected;
  the earlier row stays imported (the file is streamed, not held in memory);
- rows whose cells are all empty (spreadsheet leftovers) are skipped silently;
- a header line with `;` and no `,` is read as a `;`-separated file, as a
  spreadsheet in a German locale writes it; a leading UTF-8 BOM is ignored.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection
from tqdm import tqdm

from hub.data.import_source import (
    CUSTOM_PREFIX,
    TEXT_COLUMNS,
    Record,
    RejectWriter,
    Source,
    guess_format,
    records,
    scan,
)
from hub.data.import_source import ImportFileError as ImportFileError  # re-exported for callers
from hub.records.identity import InvalidIdentity, NormalIdentity, normalize_email, normalize_phone
from hub.records.teams import ensure_team
from hub.store.bulk import insert_returning_ids
from hub.store.db import Database
from hub.store.models import CustomerKind, utcnow
from hub.store.tables import customer_t, identity_t, tag_t, team_t, user_t

CHUNK_ROWS = 1000
IN_LIMIT = 5000  # values per IN (...) list, well below both backends' parameter limits
MAX_TAG_LENGTH = 100
_SEPARATORS = re.compile(r"[;,]")
# PostgreSQL plans the lookups from table statistics. Tables that grow from
# empty during an import have none, and the planner then reads every identity
# of a kind for each chunk (quadratic time: minutes for 100,000 rows) instead
# of using the index. Refreshing them after chunk 1, 2, 4, 8, ... keeps the
# estimates within a factor of two for the price of a few quick samples.
ANALYZE = "ANALYZE customer, identity, customer_tag"
_UPDATED = (*TEXT_COLUMNS, "kind", "custom", "owner_id", "team_id", "updated_at")


Key = tuple[str, str]  # (identity kind, normalised value)


class _RowError(Exception):
    """Why one row goes to the reject file."""


@dataclass
class ImportSummary:
    imported: int = 0
    updated: int = 0
    rejected: int = 0
    reject_path: Path | None = None

    def __str__(self) -> str:
        line = f"imported {self.imported}, updated {self.updated}, rejected {self.rejected}"
        return f"{line} (rejects in {self.reject_path})" if self.reject_path else line


@dataclass(slots=True)
class _Row:
    line: int
    cells: list[str]
    text: dict[str, str] = field(default_factory=dict)  # non-empty text columns only
    custom: dict[str, Any] = field(default_factory=dict)
    identities: list[NormalIdentity] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    owner_id: int | None = None
    team_id: int | None = None
    reject: str | None = None

    def identity_keys(self) -> list[Key]:
        return [(i.kind.value, i.value) for i in self.identities]


@dataclass(frozen=True)
class _Lookups:
    region: str
    users: dict[str, int]
    teams: dict[str, int]
    default_team_id: int | None


async def import_customers(
    db: Database,
    path: Path,
    *,
    region: str,
    fmt: str | None = None,
    rejects: Path | None = None,
    default_team: str | None = None,
    progress: bool = False,
) -> ImportSummary:
    """Import or update customers from `path`; rejected rows go to `rejects`."""
    reject_path = rejects or path.with_name(path.name + ".rejects.csv")
    source = await asyncio.to_thread(_prepare, path, fmt or guess_format(path), reject_path)
    lookups = await _load_lookups(db, region, default_team)
    summary = ImportSummary()
    claims: dict[Key, int] = {}  # identity -> line of the row that used it first
    out = RejectWriter(reject_path, source.header)
    bar = tqdm(total=source.lines, unit="line", file=sys.stderr, disable=not progress)
    stream = records(path, source)  # the second pass
    try:
        rows = (_parse(record, lookups) for record in stream)
        for number in itertools.count(1):
            if not (chunk := list(itertools.islice(rows, CHUNK_ROWS))):
                break
            async with db.write_engine.begin() as conn:
                imported, updated = await _store(conn, chunk, claims, lookups)
                if not db.sqlite and number & (number - 1) == 0:
                    await conn.execute(text(ANALYZE))
            summary.imported += imported
            summary.updated += updated
            out.write(row for row in chunk if row.reject is not None)
            bar.update(source.lines - bar.n)
    finally:
        stream.close()
        out.close()
        bar.close()
    summary.rejected = out.count
    summary.reject_path = reject_path if out.count else None
    return summary


# -- reading (the file itself is read by hub.data.import_source) ------------------


def _prepare(path: Path, fmt: str, reject_path: Path) -> Source:
    source = scan(path, fmt)
    if reject_path.resolve() == path.resolve():
        raise ImportFileError(f"{path}: the reject file cannot be the file being imported")
    reject_path.unlink(missing_ok=True)  # stale from an earlier run either way
    return source


# -- validating --------------------------------------------------------------


def _text(column: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        if "\x00" in value:  # PostgreSQL text cannot hold it: reject the row, not the file
            raise _RowError(f"{column}: contains a NUL character")
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise _RowError(f"{column}: expected text, not {type(value).__name__}")


def _items(column: str, value: Any) -> list[str]:
    """Several values: separated by `;` or `,` in a cell, or a JSON list."""
    if isinstance(value, list):
        items = [_text(column, item) for item in value]
    else:
        items = _SEPARATORS.split(_text(column, value))
    return [item.strip() for item in items if item.strip()]


def _parse(record: Record, lookups: _Lookups) -> _Row:
    row = _Row(record.line, record.cells, reject=record.error)
    if row.reject is None:
        try:
            _fill(row, record.values, lookups)
        except (_RowError, InvalidIdentity) as exc:
            row.reject = str(exc)
    return row


def _fill(row: _Row, values: dict[str, Any], lookups: _Lookups) -> None:
    for key, value in values.items():
        if key.startswith(CUSTOM_PREFIX):
            value = _text(key, value) if isinstance(value, str) else value
            if value is not None and value != "":
                row.custom[key[len(CUSTOM_PREFIX) :]] = value
        elif key in TEXT_COLUMNS and (clean := _text(key, value)):
            row.text[key] = clean
    emails = [_text("email", values.get("email")), *_items("emails", values.get("emails"))]
    phones = [_text("phone", values.get("phone")), *_items("phones", values.get("phones"))]
    found = [normalize_email(raw) for raw in emails if raw]
    found += [normalize_phone(raw, lookups.region) for raw in phones if raw]
    row.identities = list({(i.kind, i.value): i for i in found}.values())
    row.tags = list(dict.fromkeys(_items("tags", values.get("tags"))))
    if any(len(tag) > MAX_TAG_LENGTH for tag in row.tags):
        raise _RowError(f"tag longer than {MAX_TAG_LENGTH} characters")
    if owner := _text("owner", values.get("owner")):
        if owner not in lookups.users:
            raise _RowError(f"unknown owner {owner!r}")
        row.owner_id = lookups.users[owner]
    if team := _text("team", values.get("team")):
        if team not in lookups.teams:
            raise _RowError(f"unknown team {team!r}")
        row.team_id = lookups.teams[team]
    if not row.identities and not ("name" in row.text or "company" in row.text):
        raise _RowError("no name, company, email or phone")


async def _load_lookups(db: Database, region: str, default_team: str | None) -> _Lookups:
    default_id = await ensure_team(db, default_team) if default_team else None
    async with db.engine.connect() as conn:
        users = {
            r.username: r.id for r in await conn.execute(select(user_t.c.username, user_t.c.id))
        }
        teams = {r.name: r.id for r in await conn.execute(select(team_t.c.name, team_t.c.id))}
    return _Lookups(region, users, teams, default_id)


# -- writing -----------------------------------------------------------------


def _slices(values: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(values), IN_LIMIT):
        yield values[start : start + IN_LIMIT]


async def _owners(conn: AsyncConnection, keys: set[Key]) -> dict[Key, int]:
    """The customer each already stored identity belongs to (merging moves identities)."""
    by_kind: dict[str, list[str]] = defaultdict(list)
    for kind, value in sorted(keys):
        by_kind[kind].append(value)
    found: dict[Key, int] = {}
    for kind, values in by_kind.items():
        for part in _slices(values):
            result = await conn.execute(
                select(identity_t.c.value, identity_t.c.customer_id).where(
                    identity_t.c.kind == kind, identity_t.c.value.in_(part)
                )
            )
            found.update({(kind, r.value): r.customer_id for r in result})
    return found


async def _current(
    conn: AsyncConnection, ids: list[int]
) -> tuple[dict[int, dict[str, Any]], dict[int, set[str]], dict[int, set[str]]]:
    """Updatable fields, tags and kinds with a primary identity of existing customers."""
    fields: dict[int, dict[str, Any]] = {}
    tags: dict[int, set[str]] = defaultdict(set)
    primary: dict[int, set[str]] = defaultdict(set)
    columns = [customer_t.c[name] for name in _UPDATED if name != "updated_at"]
    for part in _slices(ids):
        result = await conn.execute(
            select(customer_t.c.id, *columns).where(customer_t.c.id.in_(part))
        )
        fields.update({r.id: dict(r._mapping) for r in result})
        result = await conn.execute(
            select(tag_t.c.customer_id, tag_t.c.tag).where(tag_t.c.customer_id.in_(part))
        )
        for r in result:
            tags[r.customer_id].add(r.tag)
        result = await conn.execute(
            select(identity_t.c.customer_id, identity_t.c.kind).where(
                identity_t.c.customer_id.in_(part), identity_t.c["primary"].is_(True)
            )
        )
        for r in result:
            primary[r.customer_id].add(r.kind)
    return fields, tags, primary


def _new_customer(row: _Row, lookups: _Lookups, now: datetime) -> dict[str, Any]:
    return {
        "kind": CustomerKind.CUSTOMER.value,
        **{column: row.text.get(column, "") for column in TEXT_COLUMNS},
        "custom": row.custom,
        "owner_id": row.owner_id,
        "team_id": lookups.default_team_id if row.team_id is None else row.team_id,
        "merged_into_id": None,
        "created_at": now,
        "updated_at": now,
        "last_inbound_at": None,
        "last_outbound_at": None,
    }


def _merge(fields: dict[str, Any], row: _Row) -> None:
    """Cells that are present overwrite; empty ones leave the stored value."""
    fields.update(row.text, kind=CustomerKind.CUSTOMER.value)
    if row.custom:
        fields["custom"] = {**fields["custom"], **row.custom}
    if row.owner_id is not None:
        fields["owner_id"] = row.owner_id
    if row.team_id is not None:
        fields["team_id"] = row.team_id


async def _store(
    conn: AsyncConnection, chunk: list[_Row], claims: dict[Key, int], lookups: _Lookups
) -> tuple[int, int]:
    """Write one chunk in the caller's transaction; return (imported, updated)."""
    now = utcnow()
    live = [row for row in chunk if row.reject is None]
    owners = await _owners(conn, {key for row in live for key in row.identity_keys()})
    plan: list[tuple[_Row, int | None]] = []
    for row in live:
        keys = row.identity_keys()
        if dup := next((key for key in keys if key in claims), None):
            row.reject = f"{dup[0]} {dup[1]} is already used in line {claims[dup]}"
            continue
        matched = {owners[key]: key for key in reversed(keys) if key in owners}
        if len(matched) > 1:
            found = ", ".join(f"{cid} by {key[1]}" for cid, key in sorted(matched.items()))
            row.reject = f"matches different customers: {found}"
            continue
        claims.update(dict.fromkeys(keys, row.line))
        plan.append((row, next(iter(matched), None)))

    fields, tags, primary = await _current(conn, sorted({c for _, c in plan if c is not None}))
    original = {cid: dict(values) for cid, values in fields.items()}
    new_rows = [row for row, cid in plan if cid is None]
    ids = iter(
        await insert_returning_ids(
            conn, customer_t, [_new_customer(r, lookups, now) for r in new_rows]
        )
    )
    identities: list[dict[str, Any]] = []
    tag_rows: list[dict[str, Any]] = []
    for row, matched_id in plan:
        cid = next(ids) if matched_id is None else matched_id
        if matched_id is not None:
            _merge(fields[cid], row)
        for ident in row.identities:
            if (ident.kind.value, ident.value) in owners:
                continue
            kind = ident.kind.value
            is_primary = kind not in primary[cid]  # the first of its kind
            primary[cid].add(kind)
            identities.append(
                dict(
                    customer_id=cid,
                    kind=kind,
                    value=ident.value,
                    raw=ident.raw,
                    primary=is_primary,
                    verified=ident.verified,
                    created_at=now,
                )
            )
        tag_rows += [{"customer_id": cid, "tag": tag} for tag in row.tags if tag not in tags[cid]]
        tags[cid].update(row.tags)
    if identities:
        await conn.execute(identity_t.insert(), identities)
    if tag_rows:
        await conn.execute(tag_t.insert(), tag_rows)
    changed = [
        {**{f"b_{k}": v for k, v in values.items()}, "b_updated_at": now}
        for cid, values in fields.items()
        if values != original[cid]
    ]
    if changed:
        stmt = (
            update(customer_t)
            .where(customer_t.c.id == bindparam("b_id"))
            .values({c: bindparam(f"b_{c}", type_=customer_t.c[c].type) for c in _UPDATED})
        )
        await conn.execute(stmt, changed)
    return len(new_rows), len(plan) - len(new_rows)
