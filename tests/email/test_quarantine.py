"""`crmhub quarantine list|show|retry`: held mail is listed, shown raw, and released once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, select

from hub.cli.main import main
from hub.store.db import Database
from hub.store.tables import interaction_t, quarantine_t
from tests.support.mail import hold, message

pytestmark = pytest.mark.db

UNPARSEABLE = b"Subject: no sender\r\n\r\nbody\r\n"


def _config(tmp_path: Path, url: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"database:\n  url: {url}\nemail:\n  attachments_dir: {tmp_path / 'att'}\n",
        encoding="utf-8",
    )
    return str(path)


async def _rows(db: Database) -> list[tuple[int, str, int, int | None]]:
    async with db.read() as s:
        conn = await s.connection()
        rows = await conn.execute(
            select(
                quarantine_t.c.id,
                quarantine_t.c.status,
                quarantine_t.c.attempts,
                quarantine_t.c.interaction_id,
            ).order_by(quarantine_t.c.id)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


async def _interactions(db: Database) -> int:
    async with db.read() as s:
        conn = await s.connection()
        return int(
            (await conn.execute(select(func.count()).select_from(interaction_t))).scalar_one()
        )


async def test_list_show_and_retry(
    db: Database, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _config(tmp_path, db_url)
    cli = lambda *argv: asyncio.to_thread(main, ["-c", cfg, "quarantine", *argv])  # noqa: E731
    assert await cli("list") == 0
    assert capsys.readouterr().out == "the quarantine is empty\n"

    # One held by a bug fixed since (it parses now), one still unreadable.
    fixed = await hold(db, 4, message(4), "TypeError: a parser bug, since fixed")
    broken = await hold(db, 5, UNPARSEABLE, "no sender address (From/Sender missing or unreadable)")

    assert await cli("list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split("\t")[:6] == ["id", "status", "mailbox", "folder", "uid", "attempts"]
    first = lines[1].split("\t")
    assert first[:7] == [str(fixed), "held", "support", "INBOX", "4", "1", str(len(message(4)))]
    assert first[8:] == ["kundin@example.org", "Frage 4", "TypeError: a parser bug, since fixed"]
    assert lines[2].split("\t")[:5] == [str(broken), "held", "support", "INBOX", "5"]

    assert await cli("show", str(broken)) == 0
    assert capsys.readouterr().out == UNPARSEABLE.decode()
    assert await cli("show", "999") == 1
    assert capsys.readouterr().err == "crmhub: no quarantined message with id 999\n"
    assert await cli("retry") == 1
    assert capsys.readouterr().err == "crmhub: name the ids to retry, or --all\n"

    assert await cli("retry", "--all") == 1
    out, err = capsys.readouterr()
    assert out == f"{fixed}: stored in the history\nreleased 1, not released 1\n"
    assert err == (f"{broken}: still held: no sender address (From/Sender missing or unreadable)\n")
    rows = await _rows(db)
    assert [(r[0], r[1], r[2]) for r in rows] == [(fixed, "released", 2), (broken, "held", 2)]
    assert rows[0][3] is not None and rows[1][3] is None
    assert await _interactions(db) == 1

    # Released ones are not retried again; an unknown id is named.
    assert await cli("retry", str(fixed), "12345") == 1
    out, err = capsys.readouterr()
    assert out == "released 0, not released 2\n"
    assert err == (f"{fixed}: no held message with this id\n12345: no held message with this id\n")
    assert await _interactions(db) == 1
    assert await cli("list") == 0
    assert len(capsys.readouterr().out.splitlines()) == 2  # header + the broken one
    assert await cli("list", "--all") == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
