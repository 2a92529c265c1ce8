"""`crmhub user revoke|disable|enable|password`: taking access away, and giving it back."""

from __future__ import annotations

import argparse
import os
from collections.abc import Awaitable, Callable
from typing import Any

from hub.cli.common import CliError, run_async
from hub.config import Settings
from hub.store.db import Database


def _with_db(
    settings: Settings, work: Callable[[Database], Awaitable[str]], action: str, username: str
) -> int:
    """Run `work`, print its line, and audit it (operators' changes to access count too)."""
    from hub.privacy.audit import AuditLog, Entry
    from hub.records.auth import AuthError

    async def run() -> int:
        db = Database(settings.database)
        try:
            print(await work(db))
            await AuditLog(db).write_now(
                Entry(None, action, "user", client="cli", detail={"username": username})
            )
        except AuthError as exc:
            raise CliError(str(exc)) from exc
        finally:
            await db.close()
        return 0

    return run_async(run())


def list_user_tokens(args: argparse.Namespace, settings: Settings) -> int:
    """`crmhub user token list NAME`: the ids `revoke --token-id` takes."""
    from hub.records.auth import AuthError, list_tokens

    async def run() -> int:
        db = Database(settings.database)
        try:
            tokens = await list_tokens(db, args.username)
        except AuthError as exc:
            raise CliError(str(exc)) from exc
        finally:
            await db.close()
        print(f"{'id':>4}  {'label':<20} {'created':<20} last used")
        for t in tokens:
            last = t.last_used_at.strftime("%Y-%m-%d %H:%M") if t.last_used_at else "never"
            created = t.created_at.strftime("%Y-%m-%d %H:%M")
            print(f"{t.id:>4}  {t.name or '-':<20} {created:<20} {last}")
        return 0

    return run_async(run())


def revoke_user_tokens(args: argparse.Namespace, settings: Settings) -> int:
    return _revoke(args, settings)


def _revoke(args: argparse.Namespace, settings: Settings) -> int:
    from hub.records.auth import revoke_tokens

    async def work(db: Database) -> str:
        count = await revoke_tokens(db, args.username, args.token_id)
        if args.token_id is not None and count == 0:
            raise CliError(f"user {args.username} has no token with id {args.token_id}")
        return f"revoked {count} token(s) of {args.username}"

    return _with_db(settings, work, "revoke_tokens", args.username)


def _set_active(active: bool) -> Callable[[argparse.Namespace, Settings], int]:
    def handler(args: argparse.Namespace, settings: Settings) -> int:
        from hub.records.auth import set_active

        async def work(db: Database) -> str:
            await set_active(db, args.username, active)
            if active:
                return f"user {args.username} enabled"
            return f"user {args.username} disabled: every token of theirs stops working"

        return _with_db(settings, work, "enable" if active else "disable", args.username)

    return handler


def _password(args: argparse.Namespace, settings: Settings) -> int:
    from hub.records.auth import set_password

    password = os.environ.get("CRMHUB_NEW_USER_PASSWORD", "")
    if len(password) < 8:
        raise CliError("set CRMHUB_NEW_USER_PASSWORD to the new password (8+ characters)")

    async def work(db: Database) -> str:
        await set_password(db, args.username, password, settings.auth.password_cost)
        return f"password of {args.username} changed"

    return _with_db(settings, work, "set_password", args.username)


def add_user_commands(user: argparse._SubParsersAction[Any]) -> None:
    p = user.add_parser(
        "revoke",
        help="revoke a user's API tokens (all, or one by --token-id)",
        description="Revoked tokens answer 401 at once. A user can also revoke the token "
        "they use with DELETE /api/v1/auth/token.",
    )
    p.add_argument("username")
    p.add_argument("--token-id", type=int, help="only this token (default: all)")
    p.set_defaults(handler=_revoke)
    p = user.add_parser("disable", help="stop a user: login and every token refused at once")
    p.add_argument("username")
    p.set_defaults(handler=_set_active(False))
    p = user.add_parser("enable", help="let a disabled user in again (tokens not revoked work)")
    p.add_argument("username")
    p.set_defaults(handler=_set_active(True))
    p = user.add_parser("password", help="set a user's password from $CRMHUB_NEW_USER_PASSWORD")
    p.add_argument("username")
    p.set_defaults(handler=_password)
