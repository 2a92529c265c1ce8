"""`crmhub user phone`: extension and PBX id set later, and used to map PBX users."""

from __future__ import annotations

import asyncio
import contextlib
import io
from pathlib import Path

import pytest
from sqlalchemy import select

from hub.cli.main import main
from hub.records.auth import create_user
from hub.runtime import Hub
from hub.store.models import Role, User
from tests.support.sms import rows

pytestmark = pytest.mark.db


def _run(cfg: str, argv: tuple[str, ...]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["-c", cfg, *argv])
    return code, out.getvalue(), err.getvalue()


async def _cli(hub: Hub, tmp_path: Path, *argv: str) -> tuple[int, str, str]:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"database:\n  url: {hub.settings.database.url}\n")
    return await asyncio.to_thread(_run, str(cfg), argv)


async def test_set_and_clear_extension_and_pbx_id(hub: Hub, tmp_path: Path) -> None:
    await create_user(hub.db, "alice", role=Role.AGENT, teams=["Sales"])
    assert await _cli(hub, tmp_path, "user", "phone", "alice", "--extension", "201") == (
        0,
        "user alice: phone_extension=201\n",
        "",
    )
    assert await _cli(hub, tmp_path, "user", "phone", "alice", "--pbx-id", "w0") == (
        0,
        "user alice: pbx_id=w0\n",
        "",
    )
    assert await rows(hub.db, select(User.phone_extension, User.pbx_id)) == [("201", "w0")]
    assert (await _cli(hub, tmp_path, "user", "phone", "alice", "--extension", ""))[0] == 0
    assert await rows(hub.db, select(User.phone_extension, User.pbx_id)) == [(None, "w0")]


async def test_unknown_user_and_nothing_to_set_exit_1(hub: Hub, tmp_path: Path) -> None:
    assert await _cli(hub, tmp_path, "user", "phone", "ghost", "--extension", "1") == (
        1,
        "",
        "crmhub: no user 'ghost'\n",
    )
    code, _, err = await _cli(hub, tmp_path, "user", "phone", "ghost")
    assert code == 1 and "--extension" in err
