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


async def test_a_phone_number_is_stored_in_e164_and_names_the_answering_agent(
    hub: Hub, tmp_path: Path
) -> None:
    """An answeringNumber (the agent's own phone) maps to the user whose number it is,
    in any spelling; a number that is none is refused with exit 1 and nothing set."""
    from channels.base import CallEvent, CallEventKind, CallProvider, Direction
    from hub.calls.service import CallLog

    user = await create_user(hub.db, "carla", role=Role.AGENT, teams=["Sales"])
    assert await _cli(hub, tmp_path, "user", "phone", "carla", "--number", "0171 5550009") == (
        0,
        "user carla: phone=+491715550009\n",
        "",
    )
    code, _, err = await _cli(hub, tmp_path, "user", "phone", "carla", "--number", "12")
    assert code == 1 and err.startswith("crmhub: --number:"), err
    assert await rows(hub.db, select(User.phone)) == [("+491715550009",)]

    base = dict(provider=CallProvider.PBX, call_id="n1", from_number="+4930123456",
                to_number="+49305550100", direction=Direction.IN)  # fmt: skip
    async with hub.bus.subscribe() as sub:
        await CallLog(hub).handle(CallEvent(kind=CallEventKind.NEW_CALL, **base))  # type: ignore[arg-type]
        await CallLog(hub).handle(
            CallEvent(kind=CallEventKind.ANSWER, answered_by="0049 171 5550009", **base)  # type: ignore[arg-type]
        )
        events = []
        while not sub.empty():
            events.append(sub.get_nowait())
    answered = [e for e in events if e.kind == "call.answered"]
    assert [(e.data["answered_by"], e.data["answered_user_id"]) for e in answered] == [
        ("0049 171 5550009", user.id)
    ]
