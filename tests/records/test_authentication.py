"""Authentication hardening: cost, rehash, equal work, throttling, expiry, logout, revoke."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from hub.cli.main import main
from hub.config import Settings
from hub.records import passwords
from hub.records.auth import authenticate_password, authenticate_token, issue_token, token_hash
from hub.records.throttle import LoginThrottle
from hub.runtime import Hub
from hub.store.models import ApiToken, User, utcnow
from hub.store.tables import audit_t
from hub.web.access_log import AccessLogger
from tests.support.api import Api

pytestmark = pytest.mark.db


def test_the_default_cost_is_n_2_17() -> None:
    assert Settings().auth.password_cost == 17
    stored = passwords.hash_password("correct horse")
    assert stored.startswith("scrypt$17$8$1$")
    assert passwords.verify_password("correct horse", stored)
    assert not passwords.verify_password("wrong horse", stored)


async def test_an_older_cheaper_hash_is_replaced_at_the_next_login(api: Api, hub: Hub) -> None:
    salt = b"0123456789abcdef"
    legacy_digest = hashlib.scrypt(b"pw-agent", salt=salt, n=2**14, r=8, p=1, dklen=32)
    legacy = f"scrypt${base64.b64encode(salt).decode()}${base64.b64encode(legacy_digest).decode()}"
    async with hub.db.write() as s:
        user = (await s.exec(select(User).where(User.username == "agent"))).one()
        user.password_hash = legacy
    assert await authenticate_password(hub.db, "agent", "wrong", cost=15) is None
    async with hub.db.read() as s:
        assert (
            await s.exec(select(User.password_hash).where(User.username == "agent"))
        ).one() == legacy
    principal = await authenticate_password(hub.db, "agent", "pw-agent", cost=15)
    assert principal is not None and principal.username == "agent"
    async with hub.db.read() as s:
        now = (await s.exec(select(User.password_hash).where(User.username == "agent"))).one()
    assert now is not None and now.startswith("scrypt$15$8$1$")
    assert passwords.verify_password("pw-agent", now)


async def test_unknown_and_disabled_users_cost_one_hash_like_known_ones(
    api: Api, hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = passwords.verify_password

    def counting(password: str, stored: str | None) -> bool:
        calls.append(password)
        return real(password, stored)

    monkeypatch.setattr(passwords, "verify_password", counting)
    for username in ("agent", "nobody-here", "sup"):  # known; unknown; known without password
        assert await authenticate_password(hub.db, username, "guess", cost=12) is None
    assert calls == ["guess", "guess", "guess"]


async def test_hashing_runs_off_the_event_loop() -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        assert not await passwords.check_async("x", passwords.hash_password("y", 15), 15)
        assert ticks > 0  # the loop ran while scrypt did its work in a thread
    finally:
        task.cancel()


def test_the_throttle_doubles_the_wait_per_failure_and_a_success_clears_it() -> None:
    throttle = LoginThrottle(free=3, free_per_address=100, max_delay=4.0)
    for _ in range(3):
        assert throttle.wait("Anna", "10.0.0.1", now=0.0) == 0.0
        throttle.failed("Anna", "10.0.0.1", now=0.0)
    assert throttle.wait("anna", "10.0.0.2", now=0.0) == 1.0  # per username, any case
    throttle.failed("anna", "10.0.0.2", now=1.0)
    assert throttle.wait("anna", "10.0.0.3", now=1.0) == 2.0
    for t in (3.0, 7.0, 11.0):
        throttle.failed("anna", "10.0.0.4", now=t)
    assert throttle.wait("anna", "10.0.0.5", now=11.0) == 4.0  # capped at max_delay
    assert throttle.wait("bert", "10.0.0.9", now=11.0) == 0.0
    throttle.succeeded("Anna")
    assert throttle.wait("anna", "10.0.0.9", now=11.0) == 0.0


def test_the_throttle_counts_per_client_address_across_usernames() -> None:
    throttle = LoginThrottle(free=100, free_per_address=2, max_delay=60.0)
    throttle.failed("a", "192.0.2.7", now=0.0)
    throttle.failed("b", "192.0.2.7", now=0.0)
    assert throttle.wait("c", "192.0.2.7", now=0.0) == 1.0
    assert throttle.wait("c", "192.0.2.8", now=0.0) == 0.0


async def test_failed_logins_get_429_with_retry_after_even_for_the_right_password(
    api: Api,
) -> None:
    body = {"username": "agent", "password": "wrong"}
    for _ in range(5):
        assert (await api.call("POST", "/api/v1/auth/token", None, json=body))[0] == 401
    resp = await api.client.post(
        "/api/v1/auth/token", json={"username": "agent", "password": "pw-agent"}
    )
    assert (resp.status, resp.headers["Retry-After"], await resp.json()) == (
        429,
        "1",
        {"error": "too_many_requests", "detail": "too many failed logins; try again in 1 s"},
    )


async def test_tokens_expire_when_idle_and_last_use_is_kept(hub: Hub, api: Api) -> None:
    token = await issue_token(hub.db, "agent")
    assert await authenticate_token(hub.db, token, idle_days=30) is not None
    async with hub.db.read() as s:
        used = (
            await s.exec(
                select(ApiToken.last_used_at).where(ApiToken.token_hash == token_hash(token))
            )
        ).one()
    assert used is not None
    later = utcnow() + timedelta(days=31)
    assert await authenticate_token(hub.db, token, idle_days=30, now=later) is None
    assert await authenticate_token(hub.db, token, idle_days=30) is not None


async def test_logout_revokes_the_token_it_was_called_with(api: Api) -> None:
    other = api.tokens["agent"]
    status, body = await api.call(
        "POST", "/api/v1/auth/token", None, json={"username": "agent", "password": "pw-agent"}
    )
    assert status == 201
    headers = {"Authorization": f"Bearer {body['token']}"}
    resp = await api.client.delete("/api/v1/auth/token", headers=headers)
    assert resp.status == 204
    resp = await api.client.get("/api/v1/customers", headers=headers)
    assert resp.status == 401
    assert (await api.call("GET", "/api/v1/customers", "agent"))[0] == 200
    assert other == api.tokens["agent"]


async def _cli(hub: Hub, tmp_path: Path, *argv: str) -> tuple[int, str, str]:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"database:\n  url: {hub.settings.database.url}\nauth:\n  password_cost: 12\n"
        "demo:\n  password: demo-password\n"
    )
    return await asyncio.to_thread(_run, str(cfg), argv)


def _run(cfg: str, argv: tuple[str, ...]) -> tuple[int, str, str]:
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["-c", cfg, *argv])
    return code, out.getvalue(), err.getvalue()


async def test_revoke_and_disable_from_the_cli(api: Api, hub: Hub, tmp_path: Path) -> None:
    assert await _cli(hub, tmp_path, "user", "revoke", "sales_agent") == (
        0,
        "revoked 1 token(s) of sales_agent\n",
        "",
    )
    assert (await api.call("GET", "/api/v1/customers", "sales_agent"))[0] == 401
    assert await _cli(hub, tmp_path, "user", "disable", "agent") == (
        0,
        "user agent disabled: every token of theirs stops working\n",
        "",
    )
    assert (await api.call("GET", "/api/v1/customers", "agent"))[0] == 401
    login = {"username": "agent", "password": "pw-agent"}
    assert (await api.call("POST", "/api/v1/auth/token", None, json=login))[0] == 401
    assert await _cli(hub, tmp_path, "user", "enable", "agent") == (0, "user agent enabled\n", "")
    assert (await api.call("GET", "/api/v1/customers", "agent"))[0] == 200
    assert await _cli(hub, tmp_path, "user", "disable", "ghost") == (
        1,
        "",
        "crmhub: no user 'ghost'\n",
    )
    async with hub.db.read() as s:
        conn = await s.connection()
        rows = await conn.execute(
            select(audit_t.c.action, audit_t.c.client, audit_t.c.detail)
            .where(audit_t.c.client == "cli")
            .order_by(audit_t.c.id)
        )
        assert [tuple(r) for r in rows] == [
            ("revoke_tokens", "cli", {"username": "sales_agent"}),
            ("disable", "cli", {"username": "agent"}),
            ("enable", "cli", {"username": "agent"}),
        ]


async def test_serve_refuses_the_network_while_demo_passwords_remain(
    api: Api, hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRMHUB_NEW_USER_PASSWORD", "demo-password")
    assert (await _cli(hub, tmp_path, "user", "password", "sup"))[0] == 0
    code, _out, err = await _cli(hub, tmp_path, "serve", "--host", "0.0.0.0", "--port", "1")
    assert (code, err) == (
        1,
        "crmhub: refusing to listen on 0.0.0.0: sup still have the demo password (change it "
        "with `crmhub user password NAME`, or pass --allow-demo-passwords)\n",
    )


def test_the_access_log_keeps_query_strings_out(caplog: pytest.LogCaptureFixture) -> None:
    from aiohttp.test_utils import make_mocked_request
    from aiohttp.web import Response

    request: Any = make_mocked_request("GET", "/api/v1/lookup?phone=+4930123456")
    logger = logging.getLogger("test.access")
    caplog.set_level(logging.INFO, logger="test.access")
    AccessLogger(logger, "").log(request, Response(status=200), 0.002)
    [line] = [r.getMessage() for r in caplog.records]
    assert '"GET /api/v1/lookup HTTP/1.1" 200' in line
    assert "4930123456" not in line


async def test_user_token_list_and_revoke_one_by_id(api: Api, hub: Hub, tmp_path: Path) -> None:
    second = await issue_token(hub.db, "sales_agent", name="laptop")
    code, out, err = await _cli(hub, tmp_path, "user", "token", "list", "sales_agent")
    assert (code, err) == (0, "")
    async with hub.db.read() as s:
        ids = (
            await s.exec(
                select(ApiToken.id)
                .where(ApiToken.user_id == api.user_ids["sales_agent"])
                .order_by(ApiToken.id)  # type: ignore[arg-type]
            )
        ).all()
    # id, label, last use (the date columns vary): the fixture's token, then "laptop".
    rows = [(line.split()[0], line.split()[1], line.split()[-1]) for line in out.splitlines()[1:]]
    assert rows == [(str(ids[0]), "-", "never"), (str(ids[1]), "laptop", "never")]
    laptop_id = ids[1]
    assert await _cli(
        hub, tmp_path, "user", "token", "revoke", "sales_agent", "--token-id", str(laptop_id)
    ) == (0, "revoked 1 token(s) of sales_agent\n", "")
    # The one revoked stops; the other keeps working.
    assert (await api.call("GET", "/api/v1/customers", None, headers=_bearer(second)))[0] == 401
    assert (await api.call("GET", "/api/v1/customers", "sales_agent"))[0] == 200
    assert await _cli(hub, tmp_path, "user", "token", "revoke", "sales_agent") == (
        0,
        "revoked 1 token(s) of sales_agent\n",
        "",
    )
    assert (await api.call("GET", "/api/v1/customers", "sales_agent"))[0] == 401
    assert await _cli(hub, tmp_path, "user", "token", "list", "ghost") == (
        1,
        "",
        "crmhub: no user 'ghost'\n",
    )


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_login_hashes_in_a_worker_thread_for_known_and_unknown_users(
    api: Api, hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    threads: list[bool] = []
    real = passwords.verify_password

    def recording(password: str, stored: str | None) -> bool:
        threads.append(threading.current_thread() is threading.main_thread())
        return real(password, stored)

    monkeypatch.setattr(passwords, "verify_password", recording)
    assert await authenticate_password(hub.db, "agent", "pw-agent", cost=12) is not None
    assert await authenticate_password(hub.db, "nobody-here", "guess", cost=12) is None
    # Never on the event loop's thread: a login must not stall webhooks.
    assert threads == [False, False]


async def test_last_use_is_written_at_most_once_a_minute(hub: Hub, api: Api) -> None:
    token = await issue_token(hub.db, "agent")

    async def last_used() -> Any:
        async with hub.db.read() as s:
            query = select(ApiToken.last_used_at).where(ApiToken.token_hash == token_hash(token))
            return (await s.exec(query)).one()

    start = utcnow()
    assert await authenticate_token(hub.db, token, now=start) is not None
    assert await last_used() == start
    # Within the minute: no write (a write per request would cost more than the request).
    assert await authenticate_token(hub.db, token, now=start + timedelta(seconds=59)) is not None
    assert await last_used() == start
    later = start + timedelta(seconds=61)
    assert await authenticate_token(hub.db, token, now=later) is not None
    assert await last_used() == later
