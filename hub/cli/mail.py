"""`crmhub quarantine list|show|retry` and `crmhub attachments sweep`: the mail store.

`retry` exits 0 when every message it tried is now in the history and 1 when
any is still held (with one line per message saying why), so a script can
tell "fixed" from "still broken".
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from hub.cli.common import CliError, run_async
from hub.config import Settings


def _with_hub(settings: Settings, work: Callable[[Any], Awaitable[int]]) -> int:
    from hub.ingest.pipeline import IngestUnavailable
    from hub.runtime import Hub

    async def main() -> int:
        hub = Hub(settings, dispatch=False)
        try:
            await hub.start()
            return await work(hub)
        except IngestUnavailable as exc:
            raise CliError(f"database unavailable: {exc}") from exc
        except (SQLAlchemyError, OSError) as exc:
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            raise CliError(f"database error: {reason}") from exc
        finally:
            await hub.stop()

    return run_async(main())


def _list(args: argparse.Namespace, settings: Settings) -> int:
    async def work(hub: Any) -> int:
        held = await hub.quarantine.list_held(include_released=args.all)
        if not held:
            print("the quarantine is empty" if not args.all else "nothing was ever quarantined")
            return 0
        print("id\tstatus\tmailbox\tfolder\tuid\tattempts\tsize\treceived\tfrom\tsubject\terror")
        for h in held:
            fields = (
                h.id,
                h.status,
                h.mailbox,
                h.folder,
                h.uid,
                h.attempts,
                h.size,
                h.created_at.isoformat(timespec="seconds"),
                h.sender,
                h.subject,
                h.error.splitlines()[0][:200] if h.error else "",
            )
            print("\t".join(str(f).replace("\t", " ") for f in fields))
        return 0

    return _with_hub(settings, work)


def _show(args: argparse.Namespace, settings: Settings) -> int:
    async def work(hub: Any) -> int:
        raw = await hub.quarantine.raw_of(args.id)
        if raw is None:
            raise CliError(f"no quarantined message with id {args.id}")
        sys.stdout.buffer.write(raw)
        sys.stdout.flush()
        return 0

    return _with_hub(settings, work)


def _retry(args: argparse.Namespace, settings: Settings) -> int:
    if not args.ids and not args.all:
        raise CliError("name the ids to retry, or --all")

    async def work(hub: Any) -> int:
        report = await hub.quarantine.retry(None if args.all else args.ids)
        for qid in report.released:
            print(f"{qid}: stored in the history")
        for qid, reason in sorted(report.failed.items()):
            print(f"{qid}: {reason}", file=sys.stderr)
        print(f"released {len(report.released)}, not released {len(report.failed)}")
        return 1 if report.failed else 0

    return _with_hub(settings, work)


def _sweep(args: argparse.Namespace, settings: Settings) -> int:
    from channels.email.attachments import AttachmentStore
    from hub.mail.sweep import sweep_orphans
    from hub.store.db import Database

    async def run() -> int:
        db = Database(settings.database)
        try:
            report = await sweep_orphans(
                db,
                AttachmentStore(settings.email.attachments_dir),
                grace_seconds=args.grace_minutes * 60,
                dry_run=args.dry_run,
            )
        finally:
            await db.close()
        verb = "removed" if report.removed else "would remove"
        print(
            f"{verb} {report.orphans} attachment files that no history entry names "
            f"({report.bytes} bytes)"
        )
        return 0

    return run_async(run())


def add_commands(sub: argparse._SubParsersAction[Any]) -> None:
    what = sub.add_parser("attachments", help="the attachment store").add_subparsers(
        dest="what", metavar="ACTION", required=True
    )
    p = what.add_parser(
        "sweep",
        help="remove files no history entry names (left by a crash)",
        description="Files younger than the grace period are kept: their commit may be on its way.",
    )
    p.add_argument("--dry-run", action="store_true", help="count, remove nothing")
    p.add_argument("--grace-minutes", type=float, default=60, help="default: 60")
    p.set_defaults(handler=_sweep)

    what = sub.add_parser(
        "quarantine", help="mail that could not be parsed or stored, kept raw"
    ).add_subparsers(dest="what", metavar="ACTION", required=True)
    p = what.add_parser("list", help="list held messages (tab-separated)")
    p.add_argument("--all", action="store_true", help="include released messages")
    p.set_defaults(handler=_list)
    p = what.add_parser("show", help="write one message's raw bytes to stdout")
    p.add_argument("id", type=int, metavar="ID")
    p.set_defaults(handler=_show)
    p = what.add_parser(
        "retry",
        help="parse and store held messages again",
        description="Messages stored now leave the quarantine; the rest stay held with the "
        "new reason. Exit code 1 when any is still held.",
    )
    p.add_argument("ids", type=int, nargs="*", metavar="ID")
    p.add_argument("--all", action="store_true", help="retry every held message")
    p.set_defaults(handler=_retry)
