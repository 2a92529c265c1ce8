"""The `crmhub` console script: help, exit codes, one-line errors, users, demo data."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from hub.cli.main import main
from hub.records.auth import authenticate_token
from hub.store.db import Database
from hub.store.models import Customer, Identity, Interaction, Team, User


def _config(tmp_path: Path, url: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(f"database:\n  url: {url}\n")
    return str(path)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["serve"],
        ["migrate"],
        ["seed-demo"],
        ["user"],
        ["user", "add"],
        ["user", "list"],
        ["user", "token"],
        ["customer", "merge"],
        ["import", "customers"],
        ["export", "customers"],
        ["export", "history"],
        ["quarantine"],
        ["quarantine", "list"],
        ["quarantine", "show"],
        ["quarantine", "retry"],
        ["attachments", "sweep"],
        ["audit"],
        ["privacy", "export"],
        ["privacy", "erase"],
        ["retention", "run"],
        ["user", "revoke"],
        ["user", "disable"],
        ["user", "enable"],
        ["user", "password"],
    ],
)
def test_every_command_has_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("usage: crmhub")


def test_console_script_is_installed() -> None:
    out = subprocess.run(
        [str(Path(sys.executable).parent / "crmhub"), "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "seed-demo" in out.stdout


def test_bad_config_is_exit_1_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("databse:\n  url: x\n")
    assert main(["-c", str(path), "migrate"]) == 1
    assert capsys.readouterr().err == f"crmhub: {path}: databse: extra inputs are not permitted\n"


def test_users_and_tokens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    cfg = _config(tmp_path, url)
    assert main(["-c", cfg, "migrate"]) == 0
    assert capsys.readouterr().out == (
        f"database {url} is at the newest schema\n"
        "default templates added: follow-up-de, follow-up-en, newsletter-de, newsletter-en, "
        "sms-announcement-de, sms-announcement-en\n"
    )
    assert main(["-c", cfg, "migrate"]) == 0  # again: the templates exist, nothing is added
    assert capsys.readouterr().out == f"database {url} is at the newest schema\n"
    monkeypatch.setenv("CRMHUB_NEW_USER_PASSWORD", "s3cret")
    assert (
        main(
            [
                "-c",
                cfg,
                "user",
                "add",
                "anna",
                "--role",
                "agent",
                "--team",
                "Support",
                "--team",
                "Sales",
                "--extension",
                "201",
                "--password-env",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out == "user anna (id 1, agent) created\n"
    assert main(["-c", cfg, "user", "add", "anna"]) == 1
    assert capsys.readouterr().err == "crmhub: user 'anna' already exists\n"
    assert main(["-c", cfg, "user", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["1", "anna", "agent", "201", "Sales,Support"]
    assert main(["-c", cfg, "user", "token", "nobody"]) == 1
    assert capsys.readouterr().err == "crmhub: no user 'nobody'\n"
    assert main(["-c", cfg, "user", "token", "anna"]) == 0
    token = capsys.readouterr().out.strip()

    async def check() -> None:
        from hub.config import DatabaseConfig

        db = Database(DatabaseConfig(url=url))
        principal = await authenticate_token(db, token)
        await db.close()
        assert principal is not None and principal.username == "anna"

    asyncio.run(check())


async def test_seed_demo(
    db: Database, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _config(tmp_path, db_url)
    assert await asyncio.to_thread(main, ["-c", cfg, "seed-demo", "--customers", "30"]) == 0
    assert capsys.readouterr().out.startswith(
        "demo data: 30 customers, 30 inbound contacts, 10 notes;"
    )
    async with db.read() as s:
        count = lambda model: s.exec(select(func.count()).select_from(model))  # noqa: E731
        assert (await count(Customer)).scalar_one() == 30
        assert (await count(Identity)).scalar_one() == 60
        assert (await count(User)).scalar_one() == 5
        assert (await count(Interaction)).scalar_one() == 40
        assert sorted((await s.exec(select(Team.name))).scalars()) == ["Sales", "Support"]
        by_channel = dict(
            (
                await s.exec(
                    select(Interaction.channel, func.count()).group_by(Interaction.channel)
                )
            ).all()
        )
        assert by_channel == {"email": 10, "sms": 10, "phone": 10, "note": 10}
    assert await asyncio.to_thread(main, ["-c", cfg, "seed-demo", "--if-empty"]) == 0
    assert capsys.readouterr().out == "demo data present (30 customers); nothing to do\n"
    assert await asyncio.to_thread(main, ["-c", cfg, "seed-demo"]) == 1
    assert (
        capsys.readouterr().err
        == "crmhub: the database already has 30 customers; use a fresh one\n"
    )
