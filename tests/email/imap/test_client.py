"""`ImapClient` alone against the real Dovecot: refused logins, TCP keepalive,
SELECT failures that keep the connection, fetching without marking read, IDLE.

The sync built on it is in test_imap_sync.py; shared pieces in tests/imap_helpers.py;
IDLE against a fake server that cuts lines across reads in test_imap_idle.py.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from imapclient import SEEN
from pydantic import ValidationError

from channels.email.config import ImapConfig
from channels.email.imap import FolderState, ImapAuthError, ImapClient, ImapFolderError
from tests.support.dovecot import ImapServer, append, folder_flags, session
from tests.support.imap import WAIT, config, mail, new_user, uidvalidity


async def test_refuses_clear_login_without_starttls_and_bad_passwords(
    dovecot: ImapServer,
) -> None:
    user = new_user()
    for cfg, password in (
        (config(dovecot, user, tls="starttls"), dovecot.password),
        (config(dovecot, user), "wrong"),
    ):
        client = ImapClient("support", cfg, password)
        try:
            with pytest.raises(ImapAuthError):
                await client.connect()
        finally:
            await client.close()


async def test_client_fetch_skips_vanished_uids_and_keeps_order(
    dovecot: ImapServer,
) -> None:
    user = new_user()
    append(dovecot, user, "INBOX", mail("j", 1), mail("j", 2))
    client = ImapClient("support", config(dovecot, user), dovecot.password)
    try:
        await client.connect()
        state = await client.select("INBOX")
        assert state == FolderState(uidvalidity(dovecot, user, "INBOX"), 3)
        assert await client.uids_after(0) == [1, 2]
        assert await client.uids_after(2) == []
        fetched = await client.fetch([2, 99, 1])
    finally:
        await client.close()
    assert [m.uid for m in fetched] == [2, 1]
    assert [m.raw.replace(b"\r\n", b"\n") for m in fetched] == [
        mail("j", 2).replace(b"\r\n", b"\n"),
        mail("j", 1).replace(b"\r\n", b"\n"),
    ]
    assert all(m.internaldate is not None and m.internaldate.tzinfo for m in fetched)
    # BODY.PEEK[]: fetching alone marks nothing read.
    assert not any(b"\\Seen" in f for f in folder_flags(dovecot, user, "INBOX").values())


async def test_client_socket_has_tcp_keepalive(dovecot: ImapServer) -> None:
    client = ImapClient("support", config(dovecot, new_user()), dovecot.password)
    try:
        await client.connect()
        sock = client._conn().socket()
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0
        for option, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 15), ("TCP_KEEPCNT", 4)):
            if hasattr(socket, option):
                assert sock.getsockopt(socket.IPPROTO_TCP, getattr(socket, option)) == value
    finally:
        await client.close()


def test_idle_renewal_is_below_29_minutes() -> None:
    assert ImapConfig(idle_renew_seconds=29 * 60 - 1).idle_renew_seconds == 29 * 60 - 1
    with pytest.raises(ValidationError):
        ImapConfig(idle_renew_seconds=29 * 60)


async def test_client_select_of_a_missing_folder_keeps_the_connection(
    dovecot: ImapServer,
) -> None:
    user = new_user()
    append(dovecot, user, "INBOX", mail("k", 1))
    client = ImapClient("support", config(dovecot, user), dovecot.password)
    try:
        await client.connect()
        await client.select("INBOX")
        with pytest.raises(ImapFolderError) as caught:
            await client.select("Missing")
        assert caught.value.folder == "Missing"
        assert client.selected is None
        await client.select("INBOX")
        assert client.selected == "INBOX"
        assert await client.uids_after(0) == [1]
    finally:
        await client.close()


class NoUidvalidityClient(ImapClient):
    """A server whose SELECT answer lacks UIDVALIDITY (Dovecot always sends it)."""

    async def connect(self) -> None:
        await super().connect()
        imap = self._conn()
        select_folder = imap.select_folder

        def without_uidvalidity(folder: str, readonly: bool = False) -> dict[bytes, Any]:
            info = dict(select_folder(folder, readonly))
            del info[b"UIDVALIDITY"]
            return info

        imap.select_folder = without_uidvalidity  # type: ignore[method-assign]


async def test_client_select_answer_without_uidvalidity_is_a_folder_error(
    dovecot: ImapServer,
) -> None:
    client = NoUidvalidityClient("support", config(dovecot, new_user()), dovecot.password)
    try:
        await client.connect()
        with pytest.raises(ImapFolderError, match="without a valid UIDVALIDITY"):
            await client.select("INBOX")
        assert client.selected is None
    finally:
        await client.close()


async def test_client_idle_sees_mail_announced_as_it_starts(
    dovecot: ImapServer,
) -> None:
    user = new_user()
    append(dovecot, user, "INBOX", mail("p", 1))
    client = ImapClient("support", config(dovecot, user), dovecot.password)
    try:
        await client.connect()
        await client.select("INBOX")
        assert await client.uids_after(0) == [1]
        # Arrives after the search: Dovecot announces it with (often in the
        # same packet as) its "+ idling", which imaplib buffers unseen by select().
        append(dovecot, user, "INBOX", mail("p", 2))
        assert await asyncio.wait_for(client.idle(600), WAIT) is True
        assert await client.uids_after(1) == [2]
    finally:
        await client.close()


async def test_client_idle_survives_a_burst_of_flag_changes(dovecot: ImapServer) -> None:
    """Someone marks thousands of messages read in another client while we idle.

    Dovecot's FETCH lines come in several reads, cut wherever its writes end;
    IDLE keeps the connection and still sees the mail delivered after them.
    (Cuts forced at every kind of place: test_imap_idle.py, with a fake server.)
    """
    user, count = new_user(), 3000
    with session(dovecot, user) as other:
        other.multiappend("INBOX", [mail("q", i) for i in range(1, count + 1)])
    client = ImapClient("support", config(dovecot, user), dovecot.password)
    try:
        await client.connect()
        await client.select("INBOX")
        assert len(await client.uids_after(0)) == count
        idling = asyncio.create_task(client.idle(WAIT))

        def mark_all_read_then_deliver() -> None:
            with session(dovecot, user) as other:
                other.select_folder("INBOX")
                other.add_flags(range(1, count + 1), [SEEN], silent=True)
                other.append("INBOX", mail("q", count + 1))

        await asyncio.sleep(0.3)  # IDLE is running
        await asyncio.to_thread(mark_all_read_then_deliver)
        assert await asyncio.wait_for(idling, WAIT) is True
        assert await client.uids_after(count) == [count + 1]
    finally:
        await client.close()
