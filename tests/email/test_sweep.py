"""Attachment files no history entry names are swept; named and young ones stay."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from channels.email.attachments import AttachmentStore
from hub.cli.main import main
from hub.mail.sweep import sweep_orphans
from hub.store.db import Database
from hub.store.models import Attachment, Customer, Interaction

pytestmark = pytest.mark.db


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


async def _name(db: Database, sha256: str) -> None:
    async with db.write() as s:
        customer = Customer(name="Ann")
        s.add(customer)
        await s.flush()
        interaction = Interaction(customer_id=customer.id, channel="email", direction="in")
        s.add(interaction)
        await s.flush()
        assert interaction.id is not None
        s.add(Attachment(interaction_id=interaction.id, filename="a.pdf", sha256=sha256))


async def test_only_old_files_nobody_names_are_removed(db: Database, tmp_path: Path) -> None:
    store = AttachmentStore(tmp_path / "att")
    named, orphan, young = store.put(b"named"), store.put(b"orphan!"), store.put(b"young")
    await _name(db, named)
    tmp = store.path_for(named).parent / ".tmp-crashed"
    tmp.write_bytes(b"half")
    for path in (store.path_for(named), store.path_for(orphan), tmp):
        _age(path, 7200)

    dry = await sweep_orphans(db, store, dry_run=True)
    assert (dry.orphans, dry.bytes, dry.removed) == (2, 7 + 4, False)
    assert store.exists(orphan) and tmp.exists()

    done = await sweep_orphans(db, store)
    assert (done.orphans, done.bytes, done.removed) == (2, 11, True)
    assert sorted(name for name, _ in store.files()) == sorted([named, young])


def test_the_cli_sweeps(tmp_path: Path, capsys: pytest.CaptureFixture[str], db_url: str) -> None:
    store = AttachmentStore(tmp_path / "att")
    _age(store.path_for(store.put(b"lost")), 7200)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"database:\n  url: {db_url}\nemail:\n  attachments_dir: {tmp_path / 'att'}\n")
    assert main(["-c", str(cfg), "attachments", "sweep", "--dry-run"]) == 0
    assert main(["-c", str(cfg), "attachments", "sweep"]) == 0
    out: Any = capsys.readouterr().out
    assert out == (
        "would remove 1 attachment files that no history entry names (4 bytes)\n"
        "removed 1 attachment files that no history entry names (4 bytes)\n"
    )
    assert list(store.files()) == []
