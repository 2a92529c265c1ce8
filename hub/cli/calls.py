"""`crmhub user phone`: how the PBX names an agent (extension, PBX id, phone number),
settable any time."""

from __future__ import annotations

import argparse
from typing import Any

from hub.cli.common import CliError, run_async
from hub.config import Settings
from hub.store.db import Database

# "" clears a value; anything else longer than the column is refused.
MAX_EXTENSION = 20
MAX_PBX_ID = 100


def _phone(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy import update

    from hub.store.tables import user_t

    if args.extension is None and args.pbx_id is None and args.number is None:
        raise CliError("give --extension, --pbx-id and/or --number ('' clears one)")
    values: dict[str, str | None] = {}
    if args.number is not None:
        values["phone"] = _e164(args.number, settings) if args.number.strip() else None
    for name, value, limit in (
        ("phone_extension", args.extension, MAX_EXTENSION),
        ("pbx_id", args.pbx_id, MAX_PBX_ID),
    ):
        if value is None:
            continue
        if len(value) > limit or not value.isprintable():
            raise CliError(f"{name}: at most {limit} printable characters")
        values[name] = value.strip() or None

    async def run() -> int:
        db = Database(settings.database)
        try:
            async with db.write() as s:
                conn = await s.connection()
                result = await conn.execute(
                    update(user_t).where(user_t.c.username == args.username).values(**values)
                )
                if result.rowcount == 0:
                    raise CliError(f"no user {args.username!r}")
        finally:
            await db.close()
        shown = ", ".join(f"{k}={v or '-'}" for k, v in values.items())
        print(f"user {args.username}: {shown}")
        return 0

    return run_async(run())


def _e164(raw: str, settings: Settings) -> str:
    from hub.records.identity import InvalidIdentity, normalize_phone

    try:
        number = normalize_phone(raw, settings.identity.default_region)
    except InvalidIdentity as exc:
        raise CliError(f"--number: {exc}") from exc
    if not number.verified:
        raise CliError(f"--number: {raw!r} is not a valid phone number")
    return number.value


def add_phone_commands(user: argparse._SubParsersAction[Any]) -> None:
    p = user.add_parser(
        "phone",
        help="set how the PBX names a user: --extension, --pbx-id, --number",
        description="Call events name agents by username, extension, PBX id (sipgate "
        "'w0', a PBX user name) or their phone number (an answeringNumber); this maps "
        "them to the user. '' clears a value.",
    )
    p.add_argument("username")
    p.add_argument("--extension", help="phone extension, e.g. 201")
    p.add_argument("--pbx-id", help="the PBX's own id of this user, e.g. w0")
    p.add_argument("--number", help="the user's own phone number, any spelling, e.g. 0171 5550009")
    p.set_defaults(handler=_phone)
