"""`crmhub segment create|list|show|count|preview|delete`: saved customer filters.

The CLI acts as the system (an admin without teams): it sees every customer,
and a segment it makes is shared unless --team names a team.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from hub.cli.common import CliError, run_async
from hub.config import Settings
from hub.records.auth import Principal
from hub.store.db import Database
from hub.store.models import Role

SYSTEM = Principal(0, "crmhub-cli", Role.ADMIN, frozenset())


def _filter_arg(args: argparse.Namespace) -> dict[str, Any]:
    if args.filter and args.filter_file:
        raise CliError("give --filter or --filter-file, not both")
    raw = args.filter
    if args.filter_file:
        try:
            raw = Path(args.filter_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise CliError(f"cannot read {args.filter_file}: {exc.strerror}") from None
    try:
        data = json.loads(raw or "{}")
    except ValueError as exc:
        raise CliError(f"the filter is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CliError("the filter must be a JSON object")
    return data


async def _with_db(settings: Settings, work: Callable[[Any], Awaitable[int]], write: bool) -> int:
    db = Database(settings.database)
    try:
        async with db.write() if write else db.read() as s:
            return await work(await s.connection())
    finally:
        await db.close()


async def _find(conn: Any, ref: str) -> Any:
    from sqlalchemy import select

    from hub.segments.store import get_segment
    from hub.store.tables import segment_t

    if ref.isdigit():
        return await get_segment(conn, None, int(ref))
    found = (await conn.execute(select(segment_t.c.id).where(segment_t.c.name == ref))).scalar()
    if found is None:
        raise CliError(f"no segment {ref!r}")
    return await get_segment(conn, None, found)


async def _team_id(conn: Any, name: str | None) -> int | None:
    from sqlalchemy import select

    from hub.store.tables import team_t

    if name is None:
        return None
    found = (await conn.execute(select(team_t.c.id).where(team_t.c.name == name))).scalar()
    if found is None:
        raise CliError(f"no team {name!r}")
    return int(found)


def _create(args: argparse.Namespace, settings: Settings) -> int:
    from hub.segments import count
    from hub.segments.store import create_segment, segment_filter

    data = _filter_arg(args)

    async def work(conn: Any) -> int:
        row = await create_segment(
            conn, SYSTEM, name=args.name, filter_data=data, team_id=await _team_id(conn, args.team)
        )
        total = await count(conn, segment_filter(row), None)
        print(f"segment {row.id} {row.name!r}: {total} customers")
        return 0

    return run_async(_with_db(settings, work, write=True))


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from hub.segments.store import list_segments

    async def work(conn: Any) -> int:
        rows = await list_segments(conn, None)
        for row in rows:
            team = "shared" if row.team_id is None else f"team {row.team_id}"
            print(f"{row.id:>5}  {row.name:<30}  {team:<10}  {json.dumps(row.filter)}")
        if not rows:
            print("no segments")
        return 0

    return run_async(_with_db(settings, work, write=False))


def _show(args: argparse.Namespace, settings: Settings) -> int:
    from hub.segments.store import as_json

    async def work(conn: Any) -> int:
        print(json.dumps(as_json(await _find(conn, args.segment)), indent=2))
        return 0

    return run_async(_with_db(settings, work, write=False))


def _selection(args: argparse.Namespace) -> Callable[[Any], Awaitable[Any]]:
    """The filter a count or preview runs: the saved segment's, or --filter's."""
    from hub.segments import parse_filter
    from hub.segments.store import segment_filter

    if args.segment is None and not (args.filter or args.filter_file):
        raise CliError("name a segment, or give --filter / --filter-file")
    if args.segment is not None:

        async def saved(conn: Any) -> Any:
            return segment_filter(await _find(conn, args.segment))

        return saved
    flt = parse_filter(_filter_arg(args))

    async def unsaved(conn: Any) -> Any:
        return flt

    return unsaved


def _count(args: argparse.Namespace, settings: Settings) -> int:
    from hub.segments import count

    selection = _selection(args)

    async def work(conn: Any) -> int:
        print(await count(conn, await selection(conn), None))
        return 0

    return run_async(_with_db(settings, work, write=False))


def _preview(args: argparse.Namespace, settings: Settings) -> int:
    from hub.segments import count, preview

    selection = _selection(args)
    if not 1 <= args.limit <= 10_000:
        raise CliError("--limit must be between 1 and 10000")

    async def work(conn: Any) -> int:
        flt = await selection(conn)
        total = await count(conn, flt, None)
        for c in await preview(conn, flt, None, args.limit):
            place = " ".join(p for p in (c["postal_code"], c["city"], c["country"]) if p)
            print(f"{c['id']:>8}  {c['kind']:<8}  {c['name'][:30]:<30}  {place}")
        print(f"{total} customers in all")
        return 0

    return run_async(_with_db(settings, work, write=False))


def _delete(args: argparse.Namespace, settings: Settings) -> int:
    from hub.segments.store import delete_segment

    async def work(conn: Any) -> int:
        row = await _find(conn, args.segment)
        await delete_segment(conn, SYSTEM, row.id)
        print(f"segment {row.id} {row.name!r} deleted")
        return 0

    return run_async(_with_db(settings, work, write=True))


def _filter_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--filter", help='the filter as JSON, e.g. \'{"postal_code": {"prefix": "10"}}\''
    )
    p.add_argument("--filter-file", help="a file holding the filter's JSON")


def add_commands(sub: argparse._SubParsersAction[Any]) -> None:
    seg = sub.add_parser(
        "segment",
        help="saved customer filters: create, list, show, count, preview, delete",
        description="A segment is a JSON filter over customers (README: Segments). Unknown "
        "fields or operators are refused with their name.",
    ).add_subparsers(dest="segment_command", metavar="ACTION", required=True)
    p = seg.add_parser("create", help="save a filter under a name")
    p.add_argument("name")
    _filter_options(p)
    p.add_argument("--team", help="the team it belongs to (default: shared)")
    p.set_defaults(handler=_create)
    p = seg.add_parser("list", help="every segment")
    p.set_defaults(handler=_list)
    p = seg.add_parser("show", help="one segment as JSON")
    p.add_argument("segment", help="id or name")
    p.set_defaults(handler=_show)
    p = seg.add_parser("count", help="how many customers a segment (or --filter) selects now")
    p.add_argument("segment", nargs="?", help="id or name")
    _filter_options(p)
    p.set_defaults(handler=_count)
    p = seg.add_parser("preview", help="the first customers a segment (or --filter) selects")
    p.add_argument("segment", nargs="?", help="id or name")
    _filter_options(p)
    p.add_argument("--limit", type=int, default=20, help="customers shown (default 20)")
    p.set_defaults(handler=_preview)
    p = seg.add_parser("delete", help="delete a segment")
    p.add_argument("segment", help="id or name")
    p.set_defaults(handler=_delete)
