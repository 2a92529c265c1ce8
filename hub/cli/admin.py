"""`crmhub serve`, `migrate`, `seed-demo`, `user ...` and `customer merge`."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
from typing import Any

from hub.cli.calls import add_phone_commands
from hub.cli.common import CliError
from hub.cli.users import add_user_commands
from hub.config import Settings
from hub.store.models import Role

log = logging.getLogger(__name__)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from channels.registry import missing_secrets

    host = args.host or settings.server.host
    port = args.port if args.port is not None else settings.server.port
    if not 1 <= port <= 65535:
        raise CliError(f"port {port} is out of range (1-65535)")
    missing = missing_secrets(settings)
    if missing:
        raise CliError("; ".join(missing))
    asyncio.run(_check_schema(settings))
    if not _is_loopback(host) and not (
        args.allow_demo_passwords or settings.auth.allow_demo_passwords_on_network
    ):
        demo_users = asyncio.run(_users_with_password(settings, settings.demo.password))
        if demo_users:
            raise CliError(
                f"refusing to listen on {host}: {', '.join(demo_users)} still have the demo "
                "password (change it with `crmhub user password NAME`, or pass "
                "--allow-demo-passwords)"
            )
    _fast_event_loop()
    asyncio.run(_run_server(settings, host, port))
    return 0


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


async def _users_with_password(settings: Settings, password: str) -> list[str]:
    """Active users whose password is `password` (one scrypt check each, in threads)."""
    from sqlmodel import col, select

    from hub.records.passwords import verify_password
    from hub.store.db import Database
    from hub.store.models import User

    db = Database(settings.database)
    try:
        async with db.read() as s:
            users = (
                await s.exec(
                    select(User.username, User.password_hash)
                    .where(col(User.active))
                    .order_by(col(User.id))
                )
            ).all()
    finally:
        await db.close()
    found = []
    for name, stored in users:
        if stored is not None and await asyncio.to_thread(verify_password, password, stored):
            found.append(name)
    return found


async def _check_schema(settings: Settings) -> None:
    from hub.store.migrate import current_heads, schema_revision

    try:
        revision = await schema_revision(settings.database.url)
    except Exception as exc:  # unreachable, bad URL: one line
        raise CliError(f"cannot open the database {_safe_url(settings)}: {_one_line(exc)}") from exc
    heads = current_heads()
    if revision not in heads:
        state = "was never migrated" if revision is None else f"is at schema {revision}"
        raise CliError(
            f"the database {_safe_url(settings)} {state}, not {heads[0]}: run `crmhub migrate`"
        )


async def _run_server(settings: Settings, host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM; the "serving" line only once the port is bound."""
    import signal

    from aiohttp import web

    from hub.runtime import Hub
    from hub.web.access_log import runner_options
    from hub.web.app import create_app

    hub = Hub(settings, read_mail=True)
    runner = web.AppRunner(create_app(hub), **runner_options(settings.server))
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise CliError(
                f"cannot listen on {_host_port(host, port)}: {_bind_reason(exc)}"
            ) from exc
        settle_gc()
        print(
            f"crmhub serving on http://{_host_port(host, port)} (database {_safe_url(settings)})",
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"  # IPv6 in brackets


def _bind_reason(exc: OSError) -> str:
    import socket

    if isinstance(exc, socket.gaierror):  # its errno is not an OS errno
        return f"unknown host ({str(exc.strerror).lower()})"
    # asyncio wraps the reason in a sentence of its own; the errno says it plainly.
    return os.strerror(exc.errno).lower() if exc.errno else str(exc)


def _one_line(exc: BaseException) -> str:
    """A driver's own message, without SQLAlchemy's statement and background link."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# Young-generation threshold for a serving process (CPython's default is 700).
GC_THRESHOLD = (20_000, 20, 20)


def settle_gc() -> None:
    """Freeze what exists once the server is up, and collect the young generation
    less often.

    What is alive when the port is bound (modules, config, the ORM's registries,
    ~150,000 objects) lives as long as the process; without the freeze every
    full collection walks all of it again (~80 ms each, a visible part of a
    webhook's p99). Requests allocate in bursts that are almost all freed by
    reference counting; at 700 the young generation was collected every ~25
    webhooks and promoted the in-flight ones. bench/webhook_wrk.py, 20,000
    webhooks: 1,054 young and 9 full collections took ~1.1 s before, ~0.08 s
    after; p99 117 -> 57 ms (bench/README.md).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def _fast_event_loop() -> None:
    """uvloop where it exists (not on Windows): ~15 % more webhooks per second
    in bench/sms_webhook.py than asyncio's own loop, same code."""
    try:
        import uvloop
    except ImportError:
        log.info("uvloop not installed; using asyncio's event loop")
        return
    uvloop.install()


def _safe_url(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.database.url).render_as_string(hide_password=True)


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from hub.store.migrate import upgrade

    try:
        upgrade(settings.database.url)
    except Exception as exc:  # alembic/driver errors: one line, not a traceback
        raise CliError(f"migration failed: {_one_line(exc)}") from exc
    print(f"database {_safe_url(settings)} is at the newest schema")
    from hub.cli.templates import seed_defaults

    created = [n for n, what in asyncio.run(seed_defaults(settings)).items() if what == "created"]
    if created:  # the shipped templates/, once; later edits are versions of their own
        print(f"default templates added: {', '.join(created)}")
    return 0


def _seed_demo(args: argparse.Namespace, settings: Settings) -> int:
    from hub.data.demo import seed_demo

    count = args.customers if args.customers is not None else settings.demo.customers
    return asyncio.run(seed_demo(settings, count, if_empty=args.if_empty))


def _user_add(args: argparse.Namespace, settings: Settings) -> int:
    import os

    from hub.records.auth import AuthError, create_user
    from hub.store.db import Database

    password = os.environ.get("CRMHUB_NEW_USER_PASSWORD") if args.password_env else None

    async def run() -> int:
        db = Database(settings.database)
        try:
            user = await create_user(
                db,
                args.username,
                role=Role(args.role),
                teams=args.team or [],
                password=password,
                display_name=args.name or "",
                phone_extension=args.extension,
                password_cost=settings.auth.password_cost,
            )
        except AuthError as exc:
            raise CliError(str(exc)) from exc
        finally:
            await db.close()
        print(f"user {user.username} (id {user.id}, {user.role}) created")
        return 0

    return asyncio.run(run())


def _user_list(args: argparse.Namespace, settings: Settings) -> int:
    from sqlmodel import col, select

    from hub.store.db import Database
    from hub.store.models import Team, User, UserTeam

    async def run() -> int:
        db = Database(settings.database)
        try:
            async with db.read() as s:
                users = (await s.exec(select(User).order_by(col(User.id)))).all()
                teams: dict[int, list[str]] = {}
                for uid, name in await s.exec(
                    select(UserTeam.user_id, Team.name)
                    .join(Team, col(Team.id) == col(UserTeam.team_id))
                    .order_by(col(Team.name))
                ):
                    teams.setdefault(uid, []).append(name)
        finally:
            await db.close()
        print(f"{'id':>4}  {'username':<20} {'role':<11} {'ext':<6} teams")
        for u in users:
            team_list = ",".join(teams.get(u.id or 0, []))
            print(
                f"{u.id:>4}  {u.username:<20} {u.role:<11} {u.phone_extension or '':<6} {team_list}"
            )
        return 0

    return asyncio.run(run())


def _user_token(args: argparse.Namespace, settings: Settings) -> int:
    from hub.privacy.audit import AuditLog, Entry
    from hub.records.auth import AuthError, issue_token
    from hub.store.db import Database

    async def run() -> int:
        db = Database(settings.database)
        try:
            token = await issue_token(db, args.username, name=args.label or "cli")
            await AuditLog(db).write_now(
                Entry(None, "issue_token", "user", client="cli", detail={"username": args.username})
            )
        except AuthError as exc:
            raise CliError(str(exc)) from exc
        finally:
            await db.close()
        print(token)
        return 0

    return asyncio.run(run())


def _token_command(args: argparse.Namespace, settings: Settings) -> int:
    from hub.cli.users import list_user_tokens, revoke_user_tokens

    words = args.words
    if len(words) == 2 and words[0] in ("issue", "list", "revoke"):
        action, args.username = words
    elif len(words) == 1:
        action, args.username = "issue", words[0]
    else:
        raise CliError("usage: crmhub user token [issue|list|revoke] USERNAME")
    if action == "list":
        return list_user_tokens(args, settings)
    if action == "revoke":
        return revoke_user_tokens(args, settings)
    return _user_token(args, settings)


def _customer_merge(args: argparse.Namespace, settings: Settings) -> int:
    from hub.errors import DomainError
    from hub.records.auth import Principal
    from hub.records.merge import merge_customers
    from hub.store.db import Database

    # The CLI is run by the operator, who acts as an admin (audit actor: none).
    operator = Principal(0, "cli", Role.ADMIN, frozenset())

    async def run() -> int:
        db = Database(settings.database)
        try:
            async with db.write() as s:
                kept = await merge_customers(
                    s, operator, settings.identity.default_region, args.keep, args.other
                )
        except DomainError as exc:
            raise CliError(exc.detail) from exc
        finally:
            await db.close()
        print(f"customer {args.other} merged into {kept.id}")
        return 0

    return asyncio.run(run())


def add_commands(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("serve", help="serve the API (and everything else) over HTTP")
    p.add_argument("--host", help="listen address (default: server.host)")
    p.add_argument("--port", type=int, help="listen port (default: server.port)")
    p.add_argument(
        "--allow-demo-passwords",
        action="store_true",
        help="listen beyond loopback even while users have the demo password",
    )
    p.set_defaults(handler=_serve)

    p = sub.add_parser("migrate", help="create or upgrade the database schema")
    p.set_defaults(handler=_migrate)

    p = sub.add_parser("seed-demo", help="load demo users, teams, customers and history")
    p.add_argument("--customers", type=int, help="how many customers (default: demo.customers)")
    p.add_argument("--if-empty", action="store_true", help="do nothing if customers exist")
    p.set_defaults(handler=_seed_demo)

    user = sub.add_parser("user", help="manage users").add_subparsers(
        dest="user_command", metavar="ACTION", required=True
    )
    p = user.add_parser("add", help="create a user")
    p.add_argument("username")
    p.add_argument("--role", choices=[r.value for r in Role], default=Role.AGENT.value)
    p.add_argument("--team", action="append", help="team name (repeat; created if new)")
    p.add_argument("--name", help="display name")
    p.add_argument("--extension", help="phone extension (for screen pops)")
    p.add_argument(
        "--password-env",
        action="store_true",
        help="take the password from $CRMHUB_NEW_USER_PASSWORD (never from the command line)",
    )
    p.set_defaults(handler=_user_add)
    p = user.add_parser("list", help="list users")
    p.set_defaults(handler=_user_list)
    p = user.add_parser(
        "token",
        help="issue (printed once), list or revoke a user's API tokens",
        usage="crmhub user token [issue] USERNAME [--label L] | list USERNAME | "
        "revoke USERNAME [--token-id N]",
        description="`user token NAME` issues a token and prints it once; `user token list "
        "NAME` shows token ids, labels and last use; `user token revoke NAME` revokes all of "
        "NAME's tokens, or one with --token-id.",
    )
    p.add_argument("words", nargs="+", metavar="ARG")
    p.add_argument("--label", help="what the token is for (issue)")
    p.add_argument("--token-id", type=int, help="only this token (revoke)")
    p.set_defaults(handler=_token_command)
    add_user_commands(user)
    add_phone_commands(user)

    customer = sub.add_parser("customer", help="customer maintenance").add_subparsers(
        dest="customer_command", metavar="ACTION", required=True
    )
    p = customer.add_parser("merge", help="merge customer OTHER into KEEP")
    p.add_argument("keep", type=int)
    p.add_argument("other", type=int)
    p.set_defaults(handler=_customer_merge)
