"""`crmhub audit`, `crmhub privacy export|erase` and `crmhub retention run`."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hub.cli.common import CliError, run_async
from hub.config import Settings


def _time(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _audit(args: argparse.Namespace, settings: Settings) -> int:
    from sqlmodel import select

    from hub.privacy.audit import AuditQuery, search
    from hub.store.db import Database
    from hub.store.models import User

    async def run() -> int:
        db = Database(settings.database)
        try:
            actor = None
            if args.user:
                async with db.read() as s:
                    actor = (
                        await s.exec(select(User.id).where(User.username == args.user))
                    ).first()
                if actor is None:
                    raise CliError(f"no user {args.user!r}")
            rows = await search(
                db,
                AuditQuery(
                    actor_id=actor,
                    customer_id=args.customer,
                    action=args.action,
                    since=args.since,
                    until=args.until,
                    limit=args.limit,
                ),
            )
        finally:
            await db.close()
        print("id\tat\tactor_id\taction\tentity\tentity_id\tcustomer_id\tclient\tdetail")
        for r in rows:
            cells = [r.id, r.at.isoformat(), r.actor_id, r.action, r.entity, r.entity_id]
            cells += [r.customer_id, r.client, r.detail]
            print("\t".join("" if c is None else str(c) for c in cells))
        return 0

    return run_async(run())


def _export(args: argparse.Namespace, settings: Settings) -> int:
    from channels.email.attachments import AttachmentStore
    from hub.errors import DomainError
    from hub.privacy.audit import AuditLog, Entry
    from hub.privacy.subject_export import export_subject
    from hub.store.db import Database

    async def run() -> int:
        db = Database(settings.database)
        try:
            counts = await export_subject(
                db, AttachmentStore(settings.email.attachments_dir), args.customer, args.output
            )
            await AuditLog(db).write_now(
                Entry(None, "subject_export", "customer", args.customer, args.customer, "cli")
            )
        except DomainError as exc:
            raise CliError(exc.detail) from exc
        finally:
            await db.close()
        print(
            f"wrote {args.output}: {counts['history']} history entries, {counts['files']} "
            f"attachment files, {counts['audit']} audit entries, "
            f"{counts['quarantined']} quarantined messages"
        )
        return 0

    return run_async(run())


def _erase(args: argparse.Namespace, settings: Settings) -> int:
    from channels.email.attachments import AttachmentStore
    from hub.errors import DomainError
    from hub.privacy.erase import ErasureError, erase_customer
    from hub.store.db import Database

    if not args.yes:
        raise CliError(f"erasing customer {args.customer} cannot be undone; add --yes")

    async def run() -> int:
        db = Database(settings.database)
        try:
            report = await erase_customer(
                db,
                AttachmentStore(settings.email.attachments_dir),
                settings.privacy.suppression_key,
                args.customer,
                actor_id=None,
                client="cli",
            )
        except ErasureError as exc:
            raise CliError(str(exc)) from exc
        except DomainError as exc:
            raise CliError(exc.detail) from exc
        finally:
            await db.close()
        print(
            f"erased customer {report.customer_id}: {report.identities} identities, "
            f"{report.interactions} history entries, {report.files} files, "
            f"{report.quarantined} quarantined messages; {report.suppressed_opted_out} "
            "opted-out identities kept as keyed hashes"
        )
        return 0

    return run_async(run())


def _retention(args: argparse.Namespace, settings: Settings) -> int:
    from hub.privacy.retention import apply_retention
    from hub.store.db import Database

    rules = settings.privacy.retention
    if not rules:
        raise CliError("no retention rules: add them under privacy.retention in config.yaml")

    async def run() -> int:
        db = Database(settings.database)
        try:
            results = await apply_retention(db, rules, dry_run=args.dry_run)
        finally:
            await db.close()
        for r in results:
            verb = f"would {r.rule.action}" if args.dry_run else f"{r.rule.action}d"
            print(
                f"{r.rule.channel}/{r.rule.direction} older than {r.rule.days} days: "
                f"{verb} {r.count}"
            )
        return 0

    return run_async(run())


def add_commands(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("audit", help="read the audit log (tab-separated, oldest first)")
    p.add_argument("--customer", type=int, help="entries about this customer")
    p.add_argument("--user", help="entries by this username")
    p.add_argument("--action", help="read, search, create, change, delete, login, erase, ...")
    p.add_argument("--since", type=_time, help="ISO 8601 time")
    p.add_argument("--until", type=_time, help="ISO 8601 time")
    p.add_argument("--limit", type=int, default=1000, help="default: 1000")
    p.set_defaults(handler=_audit)

    privacy = sub.add_parser("privacy", help="subject access export and erasure").add_subparsers(
        dest="privacy_command", metavar="ACTION", required=True
    )
    p = privacy.add_parser(
        "export", help="everything held about one customer, as a zip (JSON + attachments)"
    )
    p.add_argument("customer", type=int, metavar="CUSTOMER")
    p.add_argument("-o", "--output", type=Path, required=True, help="the .zip to write")
    p.set_defaults(handler=_export)
    p = privacy.add_parser(
        "erase",
        help="erase a customer for good (keeps keyed hashes of opted-out identities)",
        description="Removes the customer, their history, files, quarantined mail and "
        "outbound bodies; needs CRMHUB_PRIVACY__SUPPRESSION_KEY.",
    )
    p.add_argument("customer", type=int, metavar="CUSTOMER")
    p.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")
    p.set_defaults(handler=_erase)

    retention = sub.add_parser(
        "retention", help="apply privacy.retention to old history"
    ).add_subparsers(dest="retention_command", metavar="ACTION", required=True)
    p = retention.add_parser("run", help="delete or anonymise what the rules say")
    p.add_argument("--dry-run", action="store_true", help="count only")
    p.set_defaults(handler=_retention)
