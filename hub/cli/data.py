"""`crmhub import customers` and `crmhub export customers|history`.

An import with rejected rows still exits 0: the good rows are in, and the
reject file (written only when there are rejects) is the signal a script can
test for. An export to `-o FILE` goes to a temporary file that replaces FILE
only when the export finished, so a failed export never leaves half a file.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy.exc import SQLAlchemyError

from hub.cli.common import CliError, run_async
from hub.config import Settings
from hub.data.exporter import FORMATS, ExportError, export_customers, export_history
from hub.data.import_source import guess_format
from hub.data.importer import ImportFileError, import_customers
from hub.privacy.audit import AuditLog, Entry
from hub.store.db import Database


def _run(settings: Settings, work: Callable[[Database], Awaitable[int]]) -> int:
    """Run `work` against the configured database, turning known failures into one line."""

    async def main() -> int:
        db = Database(settings.database)
        try:
            return await work(db)
        except (ImportFileError, ExportError) as exc:
            raise CliError(str(exc)) from exc
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            raise CliError(f"database error: {reason}") from exc
        finally:
            await db.close()

    return run_async(main())


def _import_customers(args: argparse.Namespace, settings: Settings) -> int:
    async def work(db: Database) -> int:
        summary = await import_customers(
            db,
            args.file,
            region=settings.identity.default_region,
            fmt=args.format,
            rejects=args.rejects,
            default_team=args.team,
            progress=sys.stderr.isatty(),
        )
        print(summary)
        return 0

    return _run(settings, work)


@contextmanager
def _output(path: Path | None) -> Iterator[TextIO]:
    if path is None:
        yield sys.stdout
        return
    part = path.with_name(f".{path.name}.part")
    try:
        f = part.open("w", encoding="utf-8", newline="")
    except OSError as exc:
        raise CliError(f"{path}: cannot write: {exc.strerror or exc}") from None
    try:
        with f:
            yield f
        part.replace(path)
    finally:
        part.unlink(missing_ok=True)


def _export(args: argparse.Namespace, settings: Settings) -> int:
    fmt = args.format or (guess_format(args.output) if args.output else "csv")

    async def work(db: Database) -> int:
        with _output(args.output) as out:
            if args.what == "customers":
                rows = await export_customers(db, out, fmt)
            else:
                rows = await export_history(db, out, fmt, customer_id=args.customer)
        # Who copied data out is the audit's first question after a leak.
        await AuditLog(db).write_now(
            Entry(
                None,
                "export",
                args.what,
                customer_id=args.customer if args.what == "history" else None,
                client="cli",
                detail={"rows": rows, "format": fmt, "to": str(args.output or "stdout")},
            )
        )
        return 0

    try:
        return _run(settings, work)
    except BrokenPipeError:
        # The reader (`| head`) went away: stop quietly, as other Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _format_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format", choices=FORMATS, help="default: from the file's extension, else csv"
    )


def add_commands(sub: argparse._SubParsersAction[Any]) -> None:
    what = sub.add_parser("import", help="import data from a file").add_subparsers(
        dest="what", metavar="WHAT", required=True
    )
    p = what.add_parser(
        "customers",
        help="create or update customers from CSV or JSON Lines",
        description="Rows are matched to customers by email or phone; matched customers are "
        "updated (empty cells keep the stored value, tags are added). Rejected rows go to a "
        "reject file with their line number and reason.",
    )
    p.add_argument("file", type=Path, metavar="FILE")
    _format_option(p)
    p.add_argument(
        "--rejects", type=Path, metavar="PATH", help="reject file (default: FILE.rejects.csv)"
    )
    p.add_argument(
        "--team",
        metavar="NAME",
        help="team of new customers whose row names none (created if missing)",
    )
    p.set_defaults(handler=_import_customers)

    what = sub.add_parser("export", help="export data as CSV or JSON Lines").add_subparsers(
        dest="what", metavar="WHAT", required=True
    )
    p = what.add_parser("customers", help="all customers except merged ones")
    _format_option(p)
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="default: stdout")
    p.set_defaults(handler=_export)
    p = what.add_parser("history", help="the interaction history, oldest first")
    p.add_argument("--customer", type=int, metavar="ID", help="only this customer's history")
    _format_option(p)
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="default: stdout")
    p.set_defaults(handler=_export)
