"""A real Dovecot IMAP server for tests, started on a free loopback port.

The configuration is the one in ../shared/DESIGN.md: plaintext login on
loopback, any user with the password "secret", maildirs under a temporary
folder that the `dovecot` user can read. Where Dovecot is not installed the
tests that need it skip locally and fail in CI (CRMHUB_REQUIRE_SERVICES=1);
`.ci/run` installs it (Debian package dovecot-imapd).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from imapclient import IMAPClient

from tests.support.services import require_service

PASSWORD = "secret"
# Debian puts it in /usr/sbin, which a non-login PATH may lack.
DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"

CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {tmp}/run
state_dir = {tmp}/run
log_path = {tmp}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{tmp}/mail/%u
first_valid_uid = 100
service imap-login {{
  inet_listener imap {{
    port = {port}
  }}
}}
passdb {{
  driver = static
  args = password={password}
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={tmp}/mail/%u
}}
"""


@dataclass(frozen=True)
class ImapServer:
    host: str
    port: int
    password: str
    config: Path

    def stop(self) -> None:
        """Stop the server (to test outages); `start()` brings it back on the same port."""
        subprocess.run([DOVECOT, "-c", str(self.config), "stop"], check=False)
        _wait_port(self.host, self.port, up=False)

    def stop_and_disconnect(self) -> None:
        """Stop the server and cut every open session, like a crashed or rebooted host.

        A plain `stop()` leaves the running imap processes serving the
        sessions they have; kicking the users first drops those too.
        """
        subprocess.run([DOVEADM, "-c", str(self.config), "kick", "*"], check=False)
        self.stop()

    def start(self) -> None:
        subprocess.run([DOVECOT, "-c", str(self.config)], check=True)
        _wait_port(self.host, self.port, up=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(host: str, port: int, *, up: bool, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                if up:
                    return
        except OSError:
            if not up:
                return
        time.sleep(0.05)
    raise RuntimeError(f"Dovecot on {host}:{port} did not {'start' if up else 'stop'}")


def launch(tmp: Path) -> ImapServer:
    """Configure and start a Dovecot under `tmp` (world-readable: Dovecot's
    processes run as the dovecot user and must reach the maildirs)."""
    tmp.chmod(0o755)
    (tmp / "run").mkdir()
    (tmp / "mail").mkdir()
    shutil.chown(tmp / "mail", "dovecot", "dovecot")
    port = _free_port()
    config = tmp / "dovecot.conf"
    config.write_text(CONFIG.format(tmp=tmp, port=port, password=PASSWORD), encoding="utf-8")
    server = ImapServer("127.0.0.1", port, PASSWORD, config)
    server.start()
    return server


@pytest.fixture(scope="session")
def dovecot() -> Iterator[ImapServer]:
    if not os.access(DOVECOT, os.X_OK):
        require_service("Dovecot", "not installed (apt-get install dovecot-imapd)")
    # Not under pytest's tmp_path: that is private to root.
    tmp = Path(tempfile.mkdtemp(prefix="crmhub-dovecot-"))
    try:
        server = launch(tmp)
    except (subprocess.CalledProcessError, RuntimeError) as exc:
        log = (
            (tmp / "dovecot.log").read_text(errors="replace")
            if (tmp / "dovecot.log").exists()
            else ""
        )
        shutil.rmtree(tmp, ignore_errors=True)
        require_service("Dovecot", f"failed to start: {exc}; {log[-500:]}")
    yield server
    server.stop()
    shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def session(server: ImapServer, user: str) -> Iterator[IMAPClient]:
    """A logged-in imapclient connection of `user`, as a mail client or MTA would have."""
    with IMAPClient(server.host, server.port, ssl=False, timeout=10) as imap:
        imap.login(user, server.password)
        yield imap


def append(server: ImapServer, user: str, folder: str, *messages: bytes) -> None:
    """Deliver `messages` into `folder` (created when missing), in order."""
    with session(server, user) as imap:
        if not imap.folder_exists(folder):
            imap.create_folder(folder)
        for raw in messages:
            imap.append(folder, raw)


def folder_flags(server: ImapServer, user: str, folder: str) -> dict[int, tuple[bytes, ...]]:
    """UID → flags of every message in `folder` (read-only: changes nothing)."""
    with session(server, user) as imap:
        imap.select_folder(folder, readonly=True)
        uids: Sequence[int] = imap.search(["ALL"])
        if not uids:
            return {}
        data = imap.fetch(uids, ["FLAGS"])
        return {uid: tuple(data[uid][b"FLAGS"]) for uid in uids}


__all__ = ["ImapServer", "append", "dovecot", "folder_flags", "launch", "session"]
