"""Reading an import file (CSV or JSON Lines) into records, for `hub.data.importer`.

This is its own module because reading the file is a job of its own, apart
from validating rows and writing them to the database. The importer reads the
file twice: `scan` is the first pass, which checks everything that concerns the
file as a whole (readable, UTF-8, well-formed CSV, known and distinct column
names) and raises `ImportFileError` before anything is written; `records` is
the second pass, which yields one `Record` per row for the importer to
validate and store in chunks. A record keeps its cells as written, so that a
rejected row can be copied unchanged to the reject file, which `RejectWriter`
writes with the header of the file being read.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

from hub.data.csv_cells import neutralise, restore

TEXT_COLUMNS = ("name", "company", "postal_code", "city", "country", "industry", "notes")
COLUMNS = frozenset({*TEXT_COLUMNS, "email", "emails", "phone", "phones", "tags", "owner", "team"})
IGNORED_COLUMNS = frozenset(
    {"id", "kind", "created_at", "updated_at", "last_inbound_at", "last_outbound_at", "consent"}
)
CUSTOM_PREFIX = "x_"


class ImportFileError(Exception):
    """The file as a whole cannot be imported; the message is one line for the user."""


@dataclass
class Source:
    fmt: str
    header: list[str] = field(default_factory=list)  # column names as written
    keys: dict[str, str] = field(default_factory=dict)  # name as written -> column key
    lines: int = 0  # physical lines read so far


@dataclass(slots=True)
class Record:
    line: int
    cells: list[str]
    values: dict[str, Any]
    error: str | None = None


def guess_format(path: Path) -> str:
    return "jsonl" if path.suffix.lower() in (".jsonl", ".ndjson") else "csv"


def _column_key(name: str) -> str:
    clean = name.strip()
    lower = clean.lower()
    if lower.startswith(CUSTOM_PREFIX) and len(clean) > len(CUSTOM_PREFIX):
        # The prefix is matched like any header; the field name keeps its spelling,
        # so `x_Tier` and `x_tier` are two fields, as they are in Customer.custom.
        return CUSTOM_PREFIX + clean[len(CUSTOM_PREFIX) :]
    if lower in COLUMNS or lower in IGNORED_COLUMNS:
        return lower
    raise ImportFileError(f"unknown column {clean!r}" if clean else "a column has no name")


def scan(path: Path, fmt: str) -> Source:
    """The first pass: whatever must fail before the first row is written."""
    source = Source(fmt)
    try:
        for _ in records(path, source):
            pass
    except ImportFileError as exc:
        raise ImportFileError(f"{path}: {exc}") from None
    except FileNotFoundError:
        raise ImportFileError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        data = path.read_bytes()
        line = 1
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
        raise ImportFileError(f"{path}: line {line} is not UTF-8 text") from None
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return source


def records(path: Path, source: Source) -> Generator[Record, None, None]:
    source.lines = 0
    with path.open(encoding="utf-8-sig", newline="") as f:
        yield from (_csv_records if source.fmt == "csv" else _jsonl_records)(f, source)


def _csv_records(f: TextIO, source: Source) -> Iterator[Record]:
    first = f.readline()
    delimiter = ";" if ";" in first and "," not in first else ","
    reader = csv.reader(itertools.chain([first], f), delimiter=delimiter)
    source.header = next(reader, [])
    if not source.header:
        raise ImportFileError("no header line")
    keys = [_column_key(name) for name in source.header]
    if twice := next((key for key in keys if keys.count(key) > 1), None):
        raise ImportFileError(f"column {twice!r} appears twice")
    while True:
        line = reader.line_num + 1  # where the record starts; it may span lines
        try:
            cells: list[str] | None = next(reader, None)
        except csv.Error as exc:
            raise ImportFileError(f"line {reader.line_num}: {exc}") from None
        source.lines = reader.line_num
        if cells is None:
            return
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(keys):
            yield Record(line, cells, {}, f"{len(cells)} values for {len(keys)} columns")
        else:
            yield Record(line, cells, dict(zip(keys, map(restore, cells), strict=True)))


def _jsonl_records(f: TextIO, source: Source) -> Iterator[Record]:
    """Column names are collected in the first pass, which also rejects unknown ones."""
    for line, raw in enumerate(f, 1):
        source.lines = line
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            yield Record(line, [], {}, f"invalid JSON: {exc.msg} at column {exc.colno}")
            continue
        if not isinstance(obj, dict):
            yield Record(line, [], {}, "not a JSON object")
            continue
        for name in obj:
            if name not in source.keys:
                source.keys[name] = _column_key(name)
                source.header.append(name)
        values = {source.keys[name]: value for name, value in obj.items()}
        error = "a column appears twice" if len(values) < len(obj) else None
        yield Record(line, [_cell(obj.get(name)) for name in source.header], values, error)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ";".join(_cell(item) for item in value)
    return json.dumps(value, ensure_ascii=False)


class RejectedRow(Protocol):
    """A row the importer rejected: its line, the reason, and its cells as read."""

    line: int
    cells: list[str]
    reject: str | None


class RejectWriter:
    """Opens the reject file at the first rejected row, so a clean import leaves none."""

    def __init__(self, path: Path, header: list[str]) -> None:
        self.path = path
        self.header = header
        self.count = 0
        self._file: TextIO | None = None
        self._writer: Any = None

    def write(self, rows: Iterable[RejectedRow]) -> None:
        for row in rows:
            if self._file is None:
                self._file = self.path.open("w", encoding="utf-8", newline="")
                self._writer = csv.writer(self._file, lineterminator="\r\n")
                self._writer.writerow(["line", "reason", *self.header])
            cells = [row.reject or "", *row.cells]
            self._writer.writerow([row.line, *(neutralise(c) for c in cells)])
            self.count += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
