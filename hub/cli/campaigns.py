"""`crmhub campaign create|list|show|preview|schedule|start|pause|resume|cancel|stats`.

The CLI acts as the system (an admin without teams), like `crmhub segment`.
`schedule` hands a campaign to the scheduler of the running `crmhub serve`;
`start` expands it here and now, with a progress bar, and leaves the sending
to the serving node's dispatcher (or `crmhub outbox` rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from hub.cli.common import CliError, run_async
from hub.cli.segments import SYSTEM, _find, _with_db
from hub.config import Settings


def _body(args: argparse.Namespace) -> dict[str, Any]:
    if args.file:
        try:
            data = json.loads(Path(args.file).read_text(encoding="utf-8"))
        except OSError as exc:
            raise CliError(f"cannot read {args.file}: {exc.strerror}") from None
        except ValueError as exc:
            raise CliError(f"{args.file} is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise CliError(f"{args.file}: a campaign is a JSON object")
        return data
    if not (args.name and args.segment and args.template and args.channel):
        raise CliError("give --file, or --name, --segment, --template and --channel")
    schedule: dict[str, Any] = {"kind": "now", "timezone": args.tz}
    if args.at:
        schedule.update(kind="at", at=args.at)
    if args.cron:
        schedule.update(kind="cron", cron=args.cron)
    body: dict[str, Any] = {
        "name": args.name,
        "channel": args.channel,
        "segment_id": args.segment,
        "steps": [{"kind": "send", "template_id": args.template}],
        "schedule": schedule,
    }
    if args.mailbox:
        body["mailbox"] = args.mailbox
    if args.rate:
        body["rate_per_second"] = args.rate
    return body


async def _template_id(conn: Any, ref: Any) -> Any:
    from hub.templating.store import template_by_name

    if isinstance(ref, str) and not ref.isdigit():
        found = await template_by_name(conn, ref)
        if found is None:
            raise CliError(f"no template {ref!r}")
        return found.id
    return int(ref)


async def _campaign(conn: Any, ref: str) -> Any:
    from sqlalchemy import select

    from hub.campaigns.store import get_campaign
    from hub.store.tables import campaign_t

    if ref.isdigit():
        return await get_campaign(conn, None, int(ref))
    found = (await conn.execute(select(campaign_t.c.id).where(campaign_t.c.name == ref))).scalar()
    if found is None:
        raise CliError(f"no campaign {ref!r}")
    return await get_campaign(conn, None, found)


def _create(args: argparse.Namespace, settings: Settings) -> int:
    from pydantic import ValidationError

    from hub.campaigns.schemas import CampaignIn
    from hub.campaigns.store import create_campaign

    raw = _body(args)

    async def work(conn: Any) -> int:
        if isinstance(raw.get("segment_id"), str):
            raw["segment_id"] = (await _find(conn, raw["segment_id"])).id
        for step in raw.get("steps", []):
            if isinstance(step, dict) and "template_id" in step:
                step["template_id"] = await _template_id(conn, step["template_id"])
        try:
            data = CampaignIn.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise CliError(f"{where}: {first['msg']}" if where else first["msg"]) from None
        campaign_id = await create_campaign(conn, SYSTEM, settings, data)
        print(f"campaign {campaign_id} {data.name!r}: draft ({data.channel}); "
              f"`crmhub campaign schedule {campaign_id}` hands it to the scheduler")  # fmt: skip
        return 0

    return run_async(_with_db(settings, work, write=True))


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from hub.campaigns.store import list_campaigns

    async def work(conn: Any) -> int:
        rows = await list_campaigns(conn, None)
        for row in rows:
            when = row.cron or (row.schedule_at.isoformat() if row.schedule_at else "now")
            print(f"{row.id:>5}  {row.name:<30}  {row.channel:<5}  {row.status:<9}  {when}")
        if not rows:
            print("no campaigns")
        return 0

    return run_async(_with_db(settings, work, write=False))


def _show(args: argparse.Namespace, settings: Settings) -> int:
    from hub.campaigns.store import as_json, steps_of

    async def work(conn: Any) -> int:
        row = await _campaign(conn, args.campaign)
        print(json.dumps(as_json(row, await steps_of(conn, row.id)), indent=2))
        return 0

    return run_async(_with_db(settings, work, write=False))


def _status(action: str) -> Any:
    def command(args: argparse.Namespace, settings: Settings) -> int:
        from hub.campaigns.store import set_status

        async def work(conn: Any) -> int:
            row = await _campaign(conn, args.campaign)
            row = await set_status(conn, None, row.id, action)
            reason = f" ({row.paused_reason})" if row.paused_reason else ""
            print(f"campaign {row.id} {row.name!r}: {row.status}{reason}")
            return 0

        return run_async(_with_db(settings, work, write=True))

    return command


def _start(args: argparse.Namespace, settings: Settings) -> int:
    """Expand now, in this process, with a progress bar over the segment's count."""
    from tqdm import tqdm

    from hub.campaigns.runs import start_run
    from hub.segments import count
    from hub.segments.store import get_segment, segment_filter
    from hub.store.db import Database

    async def work() -> int:
        db = Database(settings.database)
        try:
            async with db.read() as s:
                conn = await s.connection()
                row = await _campaign(conn, args.campaign)
                flt = segment_filter(await get_segment(conn, None, row.segment_id))
                total = await count(conn, flt, None)
            if row.status == "draft":
                raise CliError(f"campaign {row.id} is a draft: `crmhub campaign schedule` first")
            with tqdm(total=total, unit="customers", desc=f"campaign {row.id}") as bar:

                def advance(n: int) -> None:
                    bar.update(n)

                run_id = await start_run(db, settings, row.id, progress=advance)
            if run_id is None:
                raise CliError(f"campaign {row.id} is {row.status}; nothing to start")
            print(f"campaign {row.id}: run {run_id} queued; the dispatcher sends it")
            return 0
        finally:
            await db.close()

    return run_async(work())


def _minutes(text: str) -> int:
    """--bucket: whole minutes from 1 to a week (argparse prints the reason and exits 2)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of minutes: {text!r}") from None
    if not 1 <= n <= 7 * 24 * 60:
        raise argparse.ArgumentTypeError(f"minutes from 1 to 10080, not {n}")
    return n


def _stats(args: argparse.Namespace, settings: Settings) -> int:
    from hub.campaigns.stats import campaign_stats, sent_over_time, svg_chart

    async def work(conn: Any) -> int:
        row = await _campaign(conn, args.campaign)
        figures = await campaign_stats(conn, row.id)
        print(f"campaign {row.id} {row.name!r}: {row.status}")
        for key in ("audience", "queued", "sent", "failed", "blocked", "uncertain",
                    "bounced", "delivered", "replied", "unsubscribed"):  # fmt: skip
            print(f"  {key:<13}{figures[key]:>10}")
        for reason, n in figures["suppressed"].items():
            print(f"  left out: {reason:<16}{n:>6}")
        for reason, n in figures["deferred"].items():
            print(f"  deferred: {reason:<16}{n:>6}")
        if args.svg:
            points = await sent_over_time(conn, row.id, args.bucket)
            chart = svg_chart(points, f"{row.name}: sent")
            await asyncio.to_thread(Path(args.svg).write_text, chart, encoding="utf-8")
            print(f"chart: {args.svg}")
        return 0

    return run_async(_with_db(settings, work, write=False))


def _preview(args: argparse.Namespace, settings: Settings) -> int:
    from hub.campaigns.store import steps_of
    from hub.segments import preview
    from hub.segments.store import get_segment, segment_filter
    from hub.subscriptions.links import preview_unsubscribe_url
    from hub.templating import TemplateError, recipient_contexts, render
    from hub.templating.store import get_template

    async def work(conn: Any) -> int:
        row = await _campaign(conn, args.campaign)
        step = (await steps_of(conn, row.id))[0]
        customer_id = args.customer
        if customer_id is None:
            flt = segment_filter(await get_segment(conn, None, row.segment_id))
            first = await preview(conn, flt, None, 1)
            if not first:
                raise CliError("the segment selects nobody")
            customer_id = int(first[0]["id"])
        context = (await recipient_contexts(conn, [customer_id])).get(customer_id)
        if context is None:
            raise CliError(f"no customer {customer_id}")
        context = {**context, "unsubscribe_url": preview_unsubscribe_url(settings, customer_id)}
        try:
            out = render((await get_template(conn, step.template_id)).parts, context)
        except TemplateError as exc:
            raise CliError(f"the template fails for customer {customer_id}: {exc.reason}") from None
        print(f"customer {customer_id}")
        for part in ("subject", "text", "body"):
            if getattr(out, part):
                print(f"--- {part}\n{getattr(out, part)}")
        return 0

    return run_async(_with_db(settings, work, write=False))


def add_commands(sub: Any) -> None:
    p = sub.add_parser("campaign", help="newsletters and SMS campaigns (README: Campaigns)")
    cmds = p.add_subparsers(dest="campaign_command", required=True, metavar="COMMAND")
    c = cmds.add_parser("create", help="make a campaign (a draft)")
    c.add_argument("--file", help="the campaign as JSON, as POST /api/v1/campaigns takes it")
    c.add_argument("--name")
    c.add_argument("--segment", help="segment id or name")
    c.add_argument("--template", help="template id or name (the first message)")
    c.add_argument("--channel", choices=["email", "sms"])
    c.add_argument("--at", help="wall-clock date-time in --tz, e.g. 2027-01-15T09:00")
    c.add_argument("--cron", help='five cron fields in --tz, e.g. "0 9 * * 1"')
    c.add_argument("--tz", default="Europe/Berlin", help="time zone (default Europe/Berlin)")
    c.add_argument("--mailbox", help="email: the mailbox that sends (default: the first)")
    c.add_argument("--rate", type=float, help="messages per second for this campaign")
    c.set_defaults(handler=_create)
    cmds.add_parser("list", help="every campaign").set_defaults(handler=_list)
    for name, func, text in (
        ("show", _show, "a campaign as JSON"),
        ("schedule", _status("schedule"), "hand a draft to the scheduler"),
        ("start", _start, "expand it now, here, with a progress bar"),
        ("pause", _status("pause"), "send nothing more until resumed"),
        ("resume", _status("resume"), "go on after a pause"),
        ("cancel", _status("cancel"), "never send what is queued"),
    ):
        q = cmds.add_parser(name, help=text)
        q.add_argument("campaign", help="campaign id or name")
        q.set_defaults(handler=func)
    q = cmds.add_parser("preview", help="the first message as one customer would get it")
    q.add_argument("campaign", help="campaign id or name")
    q.add_argument("--customer", type=int, help="customer id (default: the segment's first)")
    q.set_defaults(handler=_preview)
    q = cmds.add_parser("stats", help="what it sent, to whom not, and why")
    q.add_argument("campaign", help="campaign id or name")
    q.add_argument("--svg", help="also write a chart of sends over time to this SVG file")
    q.add_argument(
        "--bucket", type=_minutes, default=60, help="chart bucket in minutes (default 60)"
    )
    q.set_defaults(handler=_stats)
