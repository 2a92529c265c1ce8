"""Configuration mistakes are caught at start-up, each with one line and exit 1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from hub.cli.main import main
from hub.store.migrate import current_heads, upgrade


def _config(tmp_path: Path, extra: str = "", migrated: bool = True) -> tuple[str, str]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'start.db'}"
    if migrated:
        upgrade(url)
    path = tmp_path / "config.yaml"
    path.write_text(f"database:\n  url: {url}\nserver:\n  access_log: false\n{extra}")
    return str(path), url


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _err(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "line"),
    [
        (
            "CRMHUB_SMSS__AUTH_TOKEN",
            "environment variable CRMHUB_SMSS__AUTH_TOKEN: unknown section 'smss' (sections: "
            "api, auth, campaigns, database, demo, email, events, identity, ingest, outbox, "
            "privacy, routing, server, sms, subscriptions, teams, voice)",
        ),
        (
            "CRMHUB_SMS_AUTH_TOKEN",
            "environment variable CRMHUB_SMS_AUTH_TOKEN: sections and keys are joined by '__'; "
            "did you mean CRMHUB_SMS__AUTH_TOKEN?",
        ),
    ],
)
def test_an_unknown_environment_section_is_an_error(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    line: str,
) -> None:
    cfg, _ = _config(tmp_path, migrated=False)
    monkeypatch.setenv(name, "x")
    assert main(["-c", cfg, "migrate"]) == 1
    assert _err(capsys) == f"crmhub: {line}\n"


def test_serve_on_an_unmigrated_database_says_to_migrate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, url = _config(tmp_path, migrated=False)
    assert main(["-c", cfg, "serve", "--port", str(_free_port())]) == 1
    assert _err(capsys) == (
        f"crmhub: the database {url} was never migrated, not {current_heads()[0]}: "
        "run `crmhub migrate`\n"
    )


@pytest.mark.parametrize("port", ["0", "70000"])
def test_a_port_out_of_range_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], port: str
) -> None:
    cfg, _ = _config(tmp_path)
    assert main(["-c", cfg, "serve", "--port", port]) == 1
    assert _err(capsys) == f"crmhub: port {port} is out of range (1-65535)\n"


def test_a_port_in_use_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, _ = _config(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["-c", cfg, "serve", "--port", str(port)]) == 1
    assert _err(capsys) == f"crmhub: cannot listen on 127.0.0.1:{port}: address already in use\n"


def test_an_enabled_channel_without_its_secret_fails_at_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CRMHUB_SMS__AUTH_TOKEN", raising=False)
    monkeypatch.delenv("NO_SUCH_IMAP_PASSWORD", raising=False)
    monkeypatch.setenv("CRMHUB_EMAIL__REPLY_TOKEN_SECRET", "x" * 20)
    extra = (
        "sms:\n  enabled: true\n"
        "email:\n  mailboxes:\n    - name: support\n      address: support@example.com\n"
        "      imap:\n        password_env: NO_SUCH_IMAP_PASSWORD\n"
    )
    cfg, _ = _config(tmp_path, extra)
    assert main(["-c", cfg, "serve", "--port", str(_free_port())]) == 1
    assert _err(capsys) == (
        "crmhub: sms is enabled but its auth token is not set (CRMHUB_SMS__AUTH_TOKEN); "
        "mailbox support: imap.password_env names NO_SUCH_IMAP_PASSWORD, which is not set\n"
    )


def test_the_serving_line_comes_once_the_port_answers(tmp_path: Path) -> None:
    cfg, _ = _config(tmp_path)
    port = _free_port()
    crmhub = str(Path(sys.executable).parent / "crmhub")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMHUB_")}
    proc = subprocess.Popen(
        [crmhub, "-c", cfg, "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith(f"crmhub serving on http://127.0.0.1:{port} ")
        # Right after the line, with no waiting: the port must already answer.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as resp:
            assert resp.status == 200
    finally:
        proc.terminate()
        assert proc.wait(30) == 0


@pytest.mark.parametrize(
    ("name", "value", "line"),
    [
        (
            "CRMHUB_SMS__AUTH_TOKNE",
            "x",
            "environment variable CRMHUB_SMS__AUTH_TOKNE: sms.auth_tokne: "
            "extra inputs are not permitted",
        ),
        (
            "CRMHUB_SERVER__PORT",
            "eighty",
            "environment variable CRMHUB_SERVER__PORT: server.port: input should be a valid "
            "integer, unable to parse string as an integer",
        ),
    ],
)
def test_a_bad_key_or_value_in_a_known_section_names_the_variable(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    value: str,
    line: str,
) -> None:
    cfg, _ = _config(tmp_path, migrated=False)
    monkeypatch.setenv(name, value)
    assert main(["-c", cfg, "migrate"]) == 1
    assert _err(capsys) == f"crmhub: {line}\n"


def test_an_unknown_host_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, _ = _config(tmp_path)
    port = _free_port()
    assert main(["-c", cfg, "serve", "--host", "no-such-host.invalid", "--port", str(port)]) == 1
    err = _err(capsys)
    assert err.startswith(f"crmhub: cannot listen on no-such-host.invalid:{port}: unknown host (")
    assert err.count("\n") == 1


def test_serve_on_a_missing_sqlite_file_does_not_create_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, _ = _config(tmp_path, migrated=False)
    assert main(["-c", cfg, "serve", "--port", str(_free_port())]) == 1
    assert "run `crmhub migrate`" in _err(capsys)
    assert not (tmp_path / "start.db").exists()


def test_a_database_that_cannot_be_opened_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a-directory.db").mkdir()
    url = f"sqlite+aiosqlite:///{tmp_path / 'a-directory.db'}"
    path = tmp_path / "config.yaml"
    path.write_text(f"database:\n  url: {url}\n")
    assert main(["-c", str(path), "serve", "--port", str(_free_port())]) == 1
    assert _err(capsys) == f"crmhub: cannot open the database {url}: unable to open database file\n"


def test_a_serving_process_freezes_its_startup_objects_and_collects_less_often() -> None:
    import gc

    from hub.cli.admin import GC_THRESHOLD, settle_gc

    before = gc.get_threshold()
    try:
        settle_gc()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == GC_THRESHOLD
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
