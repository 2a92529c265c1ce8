"""Customer import benchmark: N CSV rows into a fresh database, then the same file again.

The first run creates every customer; the second matches every row by
identity and updates nothing (the re-import a user does after fixing the
rejects); the third changes one field in every row. 1 % of the rows are
invalid and go to the reject file. Goal (2-core machine): 100,000 rows in
under 60 s. It prints figures and asserts nothing about them.

    .venv/bin/python bench/import_csv.py                  # 100,000 rows, SQLite
    .venv/bin/python bench/import_csv.py --db postgresql+asyncpg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import random
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # run as `python bench/import_csv.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.target import prepare_target
from hub.config import DatabaseConfig
from hub.data.importer import import_customers
from hub.store.db import Database
from hub.store.migrate import upgrade

HEADER = [
    "name",
    "company",
    "email",
    "phones",
    "postal_code",
    "city",
    "country",
    "industry",
    "tags",
    "x_customer_number",
]
CITIES = [("10115", "Berlin"), ("20095", "Hamburg"), ("80331", "München"), ("50667", "Köln")]


def write_csv(path: Path, rows: int, city_suffix: str = "", seed: int = 3) -> None:
    rng = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(HEADER)
        for i in range(rows):
            postal, city = rng.choice(CITIES)
            # 1 % bad addresses: they must land in the reject file, not stop the import.
            email = f"kunde{i}@example" if i % 100 == 99 else f"Kunde.{i}@Example.com"
            out.writerow(
                [
                    f"Kunde {i}",
                    f"Firma {i % 5000} GmbH",
                    email,
                    f"0151 {i:08d}; +49 30 {i:07d}",
                    postal,
                    city + city_suffix,
                    "DE",
                    rng.choice(["retail", "software", "logistics"]),
                    "import;b2b",
                    f"K{i}",
                ]
            )


async def run(url: str, path: Path, label: str) -> None:
    db = Database(DatabaseConfig(url=url))
    try:
        t0 = time.perf_counter()
        summary = await import_customers(db, path, region="DE", default_team="Support")
        seconds = time.perf_counter() - t0
    finally:
        await db.close()
    print(f"{label:<24} {seconds:6.1f} s   {summary}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument(
        "--db", help="sqlite+aiosqlite:///fresh-file or a postgresql+asyncpg:// server URL"
    )
    args = parser.parse_args(argv)
    target = prepare_target(args.db, keep=False)
    try:
        upgrade(target.url)
        with tempfile.TemporaryDirectory() as tmp:
            first, changed = Path(tmp) / "customers.csv", Path(tmp) / "changed.csv"
            write_csv(first, args.rows)
            write_csv(changed, args.rows, city_suffix=" (neu)")
            print(f"database      {target.where}; {args.rows:,} rows")
            asyncio.run(run(target.url, first, "first import"))
            asyncio.run(run(target.url, first, "re-import, unchanged"))
            asyncio.run(run(target.url, changed, "re-import, city changed"))
    finally:
        target.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
