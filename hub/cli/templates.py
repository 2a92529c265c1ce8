"""`crmhub template create|version|list|show|preview|import-defaults`: message templates.

Parts come from files (`--html-file mail.html`) or from a folder laid out like
the shipped defaults (`--from-dir templates/newsletter/de`: subject.txt,
html.html, text.txt, body.txt).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from hub.cli.common import CliError, run_async
from hub.config import Settings
from hub.store.db import Database

PART_OPTIONS = ("subject", "html", "text", "body")


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {path}: {exc}") from None


def _parts(args: argparse.Namespace, base: Any = None) -> Any:
    """The parts the options give, on top of `base` (a version keeps what is not given)."""
    from hub.templating import TemplateParts
    from hub.templating.defaults import PART_FILES, read_parts

    parts = base if base is not None else TemplateParts()
    if args.from_dir:
        folder = Path(args.from_dir)
        if not folder.is_dir() or not any((folder / f).is_file() for f in PART_FILES.values()):
            raise CliError(f"{folder} holds none of {', '.join(PART_FILES.values())}")
        parts = read_parts(folder)
    given = {
        p: _read(getattr(args, f"{p}_file")) for p in PART_OPTIONS if getattr(args, f"{p}_file")
    }
    if "subject" in given:
        given["subject"] = given["subject"].rstrip("\n")
    if "body" in given:
        given["body"] = given["body"].rstrip("\n")
    parts = replace(parts, **given)
    if not args.from_dir and not given:
        raise CliError(
            "give --from-dir or at least one of --subject-file/--html-file/--text-file/--body-file"
        )
    return parts


async def _with_db(settings: Settings, work: Callable[[Any], Awaitable[int]], write: bool) -> int:
    db = Database(settings.database)
    try:
        async with db.write() if write else db.read() as s:
            return await work(await s.connection())
    finally:
        await db.close()


async def _find(conn: Any, ref: str, version: int | None = None) -> Any:
    from hub.templating.store import get_template, template_by_name

    if ref.isdigit():
        return await get_template(conn, int(ref), version)
    found = await template_by_name(conn, ref)
    if found is None:
        raise CliError(f"no template {ref!r}")
    return found if version is None else await get_template(conn, found.id, version)


def _create(args: argparse.Namespace, settings: Settings) -> int:
    from hub.templating.store import create_template

    parts = _parts(args)
    channel = args.channel or ("sms" if parts.body else "email")

    async def work(conn: Any) -> int:
        stored = await create_template(
            conn, name=args.name, channel=channel, locale=args.locale, parts=parts, created_by=None
        )
        print(f"template {stored.id} {stored.name!r} ({stored.channel}, {stored.locale}) version 1")
        return 0

    return run_async(_with_db(settings, work, write=True))


def _version(args: argparse.Namespace, settings: Settings) -> int:
    from hub.templating.store import add_version

    _parts(args)  # refuse missing or unreadable files before touching the database

    async def work(conn: Any) -> int:
        head = await _find(conn, args.template)
        stored = await add_version(conn, head.id, _parts(args, head.parts), None)
        print(f"template {stored.id} {stored.name!r} version {stored.version}")
        return 0

    return run_async(_with_db(settings, work, write=True))


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from hub.templating.store import list_templates

    async def work(conn: Any) -> int:
        items = await list_templates(conn)
        for t in items:
            kind = f"{t['channel']:<5}  {t['locale']:<5}"
            print(f"{t['id']:>5}  {t['name']:<28}  {kind}  v{t['version']}")
        if not items:
            print("no templates (crmhub template import-defaults adds the shipped ones)")
        return 0

    return run_async(_with_db(settings, work, write=False))


def _show(args: argparse.Namespace, settings: Settings) -> int:
    async def work(conn: Any) -> int:
        print(json.dumps((await _find(conn, args.template, args.version)).as_json(), indent=2))
        return 0

    return run_async(_with_db(settings, work, write=False))


def _preview(args: argparse.Namespace, settings: Settings) -> int:
    from hub.subscriptions.links import preview_unsubscribe_url
    from hub.templating import TemplateError, recipient_contexts, render

    async def work(conn: Any) -> int:
        stored = await _find(conn, args.template, args.version)
        contexts = await recipient_contexts(conn, [args.customer])
        if args.customer not in contexts:
            raise CliError(f"no customer {args.customer}")
        context = {
            "unsubscribe_url": preview_unsubscribe_url(settings, args.customer),
            **contexts[args.customer],
        }
        try:
            out = render(stored.parts, context)
        except TemplateError as exc:
            raise CliError(f"template {stored.name} v{stored.version}: {exc.reason}") from None
        for name in PART_OPTIONS:
            value = getattr(out, name)
            if value:
                print(f"--- {name} ---\n{value.rstrip()}")
        return 0

    return run_async(_with_db(settings, work, write=False))


async def seed_defaults(
    settings: Settings, root: Path | None = None, update: bool = False
) -> dict[str, str]:
    from hub.templating.defaults import DEFAULTS_DIR, import_defaults

    db = Database(settings.database)
    try:
        async with db.write() as s:
            return await import_defaults(await s.connection(), root or DEFAULTS_DIR, update=update)
    finally:
        await db.close()


def _import(args: argparse.Namespace, settings: Settings) -> int:
    root = Path(args.dir) if args.dir else None
    try:
        result = asyncio.run(seed_defaults(settings, root, args.update))
    except FileNotFoundError as exc:
        raise CliError(str(exc)) from None
    for name, what in result.items():
        print(f"{what:<8} {name}")
    return 0


def _part_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from-dir", help="a folder with subject.txt, html.html, text.txt or body.txt")
    for part in PART_OPTIONS:
        p.add_argument(f"--{part}-file", help=f"a file holding the {part}")


def add_commands(sub: argparse._SubParsersAction[Any]) -> None:
    tpl = sub.add_parser(
        "template",
        help="message templates: create, version, list, show, preview, import-defaults",
        description="Jinja2 templates in a sandbox (README: Templates); "
        "every edit is a new version.",
    ).add_subparsers(dest="template_command", metavar="ACTION", required=True)
    p = tpl.add_parser("create", help="create a template from files")
    p.add_argument("name")
    p.add_argument("--channel", choices=["email", "sms"], help="default: sms if a body is given")
    p.add_argument("--locale", default="de", help="default de")
    _part_options(p)
    p.set_defaults(handler=_create)
    p = tpl.add_parser("version", help="add a version (the parts not given stay as they were)")
    p.add_argument("template", help="id or name")
    _part_options(p)
    p.set_defaults(handler=_version)
    p = tpl.add_parser("list", help="every template with its newest version")
    p.set_defaults(handler=_list)
    p = tpl.add_parser("show", help="a template's parts as JSON")
    p.add_argument("template", help="id or name")
    p.add_argument("--version", type=int, help="default: the newest")
    p.set_defaults(handler=_show)
    p = tpl.add_parser("preview", help="render a template for one customer")
    p.add_argument("template", help="id or name")
    p.add_argument("--customer", type=int, required=True, help="customer id")
    p.add_argument("--version", type=int, help="default: the newest")
    p.set_defaults(handler=_preview)
    p = tpl.add_parser(
        "import-defaults",
        help="store the shipped templates/ as <template>-<locale> (existing names are kept)",
    )
    p.add_argument("--dir", help="the templates folder (default: the repository's templates/)")
    p.add_argument("--update", action="store_true", help="add a version where the files differ")
    p.set_defaults(handler=_import)
