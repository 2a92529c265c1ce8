"""One IMAP connection per mailbox, driven from asyncio through one dedicated thread.

imapclient blocks and is not thread-safe, so each `ImapClient` owns exactly
one `IMAPClient` and one single-worker executor: every call on the
connection runs on that one thread, in order, and the event loop never
blocks. Every socket or protocol failure surfaces as `ImapUnavailable`, so
the sync loop has one thing to catch: drop the client and reconnect. A
folder the server refuses to select (missing, not selectable, no
UIDVALIDITY) is `ImapFolderError` instead: the connection is fine, only that
folder is skipped.

Dead peers: while idling the client only waits for the socket to become
readable, and a peer that vanished without a FIN or RST (a NAT or firewall
that dropped the flow, a host that lost power) would never make it so; only
the DONE at the IDLE renewal, up to `idle_renew_seconds` later, would fail.
So the socket has TCP keepalive on: on Linux the kernel probes after
KEEPALIVE_IDLE_SECONDS of silence and gives up after KEEPALIVE_PROBES
unanswered probes KEEPALIVE_INTERVAL_SECONDS apart (about two minutes in
all); the socket then reports an error, IDLE ends with `ImapUnavailable` and
the sync reconnects. Elsewhere SO_KEEPALIVE runs on the system's timers.
"""

from __future__ import annotations

import asyncio
import functools
import imaplib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from imapclient import DELETED, SEEN, IMAPClient
from imapclient.exceptions import LoginError

from channels.email.config import ImapConfig
from channels.email.imap_idle import IdleReader

log = logging.getLogger(__name__)

T = TypeVar("T")

# IDLE waits in slices this long, so a stop request is seen within a second.
IDLE_SLICE_SECONDS = 1.0
# Bounded so a hung server cannot hold up shutdown for a whole command timeout.
CLOSE_TIMEOUT_SECONDS = 5.0
_NEW_MAIL = (b"EXISTS", b"RECENT")
# TCP keepalive on the IMAP socket (see the module docstring): probe after this
# much silence, this often, this many times before the connection counts as dead.
KEEPALIVE_IDLE_SECONDS = 60
KEEPALIVE_INTERVAL_SECONDS = 15
KEEPALIVE_PROBES = 4


class ImapUnavailable(Exception):
    """The connection is unusable (lost, timed out, refused, protocol error): reconnect."""


class ImapAuthError(ImapUnavailable):
    """Login refused, or refused by us (STARTTLS required but not offered)."""


class ImapFolderError(Exception):
    """One folder cannot be used (missing, not selectable, no UIDVALIDITY).

    Not an `ImapUnavailable`: the connection still works, so the other
    folders can be read; reconnecting would not bring this one back.
    """

    def __init__(self, folder: str, message: str) -> None:
        super().__init__(message)
        self.folder = folder


@dataclass(frozen=True, slots=True)
class FetchedMessage:
    uid: int
    raw: bytes
    # The server's arrival time; stands in for a missing Date header.
    internaldate: datetime | None
    # Set when the message was over the size limit: `raw` is then only its
    # header, and this is the size the server reported for the whole message.
    size: int | None = None


@dataclass(frozen=True, slots=True)
class FolderState:
    uidvalidity: int
    uidnext: int | None


class ImapClient:
    """Async wrapper over one `IMAPClient`; not safe to use from two tasks at once."""

    def __init__(self, name: str, config: ImapConfig, password: str) -> None:
        self.name = name
        self.config = config
        self._password = password
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"imap-{name}")
        self._imap: IMAPClient | None = None
        self._capabilities: frozenset[str] = frozenset()
        self._stop = threading.Event()
        self._move_target_ready = False
        self.selected: str | None = None

    # -- plumbing ---------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._executor, functools.partial(self._guarded, fn, *args)
            )
        except RuntimeError as exc:  # executor already shut down by close()
            raise ImapUnavailable(f"{self.name}: client closed") from exc

    def _guarded(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except ImapUnavailable:
            raise
        except LoginError as exc:
            raise ImapAuthError(f"{self.name}: login refused: {exc}") from exc
        except (imaplib.IMAP4.error, OSError, EOFError, ValueError) as exc:
            # imaplib raises ValueError on a socket it already closed.
            raise ImapUnavailable(f"{self.name}: {type(exc).__name__}: {exc}") from exc

    def _conn(self) -> IMAPClient:
        if self._imap is None:
            raise ImapUnavailable(f"{self.name}: not connected")
        return self._imap

    # -- public API -------------------------------------------------------------

    @property
    def capabilities(self) -> frozenset[str]:
        return self._capabilities

    @property
    def has_idle(self) -> bool:
        return "IDLE" in self._capabilities

    async def connect(self) -> None:
        await self._call(self._connect)

    def _connect(self) -> None:
        self._shutdown_conn()
        cfg = self.config
        context = ssl.create_default_context()
        if not cfg.validate_certs:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        imap = IMAPClient(
            cfg.host,
            cfg.port,
            ssl=cfg.tls == "ssl",
            ssl_context=context if cfg.tls == "ssl" else None,
            timeout=cfg.timeout,
        )
        try:
            # On the TCP socket itself, so it survives the STARTTLS wrap.
            _enable_keepalive(imap.socket())
            if cfg.tls == "starttls":
                if not imap.has_capability("STARTTLS"):
                    raise ImapAuthError(
                        f"{self.name}: server does not offer STARTTLS; "
                        "refusing to send the password in clear"
                    )
                imap.starttls(context)
            imap.login(cfg.user, self._password)
            if self._stop.is_set():  # abandoned while connecting: nobody will use it
                raise ImapUnavailable(f"{self.name}: closed while connecting")
            # Timezone-aware INTERNALDATE instead of naive local time.
            imap.normalise_times = False
            caps = imap.capabilities()
        except BaseException:
            _quiet_shutdown(imap)
            raise
        self._imap = imap
        self._capabilities = frozenset(_text(c).upper() for c in caps)
        self.selected = None

    async def select(self, folder: str) -> FolderState:
        return await self._call(self._select, folder)

    def _select(self, folder: str) -> FolderState:
        imap = self._conn()
        # A failed SELECT leaves no folder selected (RFC 3501 6.3.1).
        self.selected = None
        try:
            info = imap.select_folder(folder)
        except imaplib.IMAP4.abort:
            raise  # the connection is gone: ImapUnavailable
        except imaplib.IMAP4.error as exc:
            # A NO or BAD answer, as for a missing folder. imaplib raises the
            # same class for a connection in the wrong state, so make sure it
            # still answers; if not, NOOP raises and this is ImapUnavailable.
            imap.noop()
            raise ImapFolderError(folder, f"{self.name}: cannot select {folder!r}: {exc}") from exc
        # The counts in the SELECT answer are not news; later EXISTS are.
        _pop_new_mail(imap)
        raw_validity = info.get(b"UIDVALIDITY")
        try:
            validity = int(raw_validity)
        except (TypeError, ValueError):
            # Without it no checkpoint can be trusted (RFC 3501 requires it).
            raise ImapFolderError(
                folder,
                f"{self.name}: SELECT {folder!r} answered without a valid UIDVALIDITY "
                f"({raw_validity!r})",
            ) from None
        self.selected = folder
        uidnext = info.get(b"UIDNEXT")
        return FolderState(validity, int(uidnext) if uidnext else None)

    async def uids_after(self, last_uid: int) -> list[int]:
        return await self._call(self._uids_after, last_uid)

    def _uids_after(self, last_uid: int) -> list[int]:
        imap = self._conn()
        # Anything announced before this search is covered by it.
        _pop_new_mail(imap)
        found = imap.search(["UID", f"{last_uid + 1}:*"])
        # `UID n:*` always matches the highest UID, even when it is below n.
        return sorted(uid for uid in found if uid > last_uid)

    async def fetch(
        self, uids: Sequence[int], max_bytes: int | None = None
    ) -> list[FetchedMessage]:
        """The messages' bytes; one over `max_bytes` comes with its header only
        (`FetchedMessage.size` says how big it is), so a huge mail is never held
        in memory whole."""
        if not uids:
            return []
        return await self._call(self._fetch, list(uids), max_bytes)

    def _fetch(self, uids: list[int], max_bytes: int | None) -> list[FetchedMessage]:
        imap = self._conn()
        big: dict[int, int] = {}
        if max_bytes is not None:
            sizes = imap.fetch(uids, ["RFC822.SIZE"])
            for uid, item in sizes.items():
                size = item.get(b"RFC822.SIZE")
                if isinstance(size, int) and size > max_bytes:
                    big[uid] = size
        # PEEK: reading must not mark anything \Seen before it is committed.
        small = [uid for uid in uids if uid not in big]
        data = imap.fetch(small, ["BODY.PEEK[]", "INTERNALDATE"]) if small else {}
        if big:
            data.update(imap.fetch(sorted(big), ["BODY.PEEK[HEADER]", "INTERNALDATE"]))
        out = []
        for uid in uids:  # absent: expunged since the search
            item = data.get(uid)
            key = b"BODY[HEADER]" if uid in big else b"BODY[]"
            if item is None or key not in item:
                continue
            date = item.get(b"INTERNALDATE")
            out.append(
                FetchedMessage(
                    uid,
                    bytes(item[key]),
                    date if isinstance(date, datetime) else None,
                    size=big.get(uid),
                )
            )
        return out

    async def done(self, uids: Sequence[int]) -> None:
        """Mark committed messages as handled on the server (flag or move, per config)."""
        if uids:
            await self._call(self._done, list(uids))

    def _done(self, uids: list[int]) -> None:
        imap = self._conn()
        if self.config.after_ingest == "seen":
            imap.add_flags(uids, [SEEN], silent=True)
            return
        target = self.config.move_to
        if not self._move_target_ready:
            if not imap.folder_exists(target):
                try:
                    imap.create_folder(target)
                except imaplib.IMAP4.error:
                    if not imap.folder_exists(target):  # else: created meanwhile by someone else
                        raise
            self._move_target_ready = True
        if "MOVE" in self._capabilities:
            imap.move(uids, target)
            return
        imap.copy(uids, target)
        imap.add_flags(uids, [DELETED], silent=True)
        if "UIDPLUS" in self._capabilities:
            imap.uid_expunge(uids)
        # Without UIDPLUS a plain EXPUNGE would also purge what a person marked
        # \Deleted in their mail client; leave ours flagged for them instead.

    async def idle(self, seconds: float) -> bool:
        """IDLE on the selected folder; True when the server announced new mail."""
        return await self._call(self._idle, seconds)

    def _idle(self, seconds: float) -> bool:
        imap = self._conn()
        if self._stop.is_set():
            return False
        imap.idle()
        # Mail that arrived between the last search and IDLE was announced meanwhile.
        new_mail = _pop_new_mail(imap)
        # Until DONE the socket is read here, not by imaplib (see imap_idle).
        reader = IdleReader(imap.socket())
        new_mail = self._idle_news(reader.take_buffered(imap._imap.file)) or new_mail
        deadline = time.monotonic() + seconds
        while not new_mail and not self._stop.is_set() and not reader.eof:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if reader.wait(min(IDLE_SLICE_SECONDS, remaining)):
                new_mail = self._idle_news(reader.read_available())
        # imaplib reads the answer to DONE: hand the stream over between two responses.
        new_mail = self._idle_news(reader.finish(self.config.timeout)) or new_mail
        if reader.eof:
            raise ImapUnavailable(f"{self.name}: connection closed during IDLE")
        imap.idle_done()
        return new_mail

    def _idle_news(self, lines: list[bytes]) -> bool:
        """True when `lines` announce new mail; raises when the server ended the session."""
        new_mail = False
        for line in lines:
            words = line.split(None, 3)
            if not words or words[0] == b"+":
                continue
            if words[0] != b"*":  # tagged: IDLE is over, a DONE would go unanswered
                raise ImapUnavailable(f"{self.name}: server ended IDLE: {line[:100]!r}")
            if len(words) >= 2 and words[1].upper() == b"BYE":
                raise ImapUnavailable(f"{self.name}: server said BYE during IDLE")
            if len(words) >= 3 and words[2].upper() in _NEW_MAIL:
                new_mail = True
        return new_mail

    def interrupt(self) -> None:
        """Ask a running (or the next) `idle()` to return now; callable from any thread."""
        self._stop.set()

    def abandon(self) -> None:
        """Give up on a call stuck in the thread (a cancelled task): no waiting, no logout."""
        self._stop.set()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def close(self) -> None:
        """Log out and release the thread; never raises (the connection may be long dead)."""
        self._stop.set()
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._executor, self._logout)
            await asyncio.wait_for(future, CLOSE_TIMEOUT_SECONDS)
        except Exception as exc:
            log.debug("imap %s: close: %s", self.name, exc)
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _logout(self) -> None:
        imap, self._imap = self._imap, None
        if imap is None:
            return
        try:
            imap.logout()
        except Exception:
            _quiet_shutdown(imap)

    def _shutdown_conn(self) -> None:
        imap, self._imap = self._imap, None
        if imap is not None:
            _quiet_shutdown(imap)


def _enable_keepalive(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE_SECONDS),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL_SECONDS),
        ("TCP_KEEPCNT", KEEPALIVE_PROBES),
    ):
        if hasattr(socket, option):  # Linux; elsewhere the system's defaults apply
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


def _quiet_shutdown(imap: IMAPClient) -> None:
    try:
        imap.shutdown()
    except Exception as exc:
        log.debug("imap shutdown: %s", exc)


def _pop_new_mail(imap: IMAPClient) -> bool:
    """Take EXISTS/RECENT notices imaplib stored while running other commands."""
    untagged: dict[Any, Any] = imap._imap.untagged_responses
    found = False
    for key in ("EXISTS", "RECENT", b"EXISTS", b"RECENT"):
        found = untagged.pop(key, None) is not None or found
    return found


def _text(value: bytes | str) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else value


__all__ = [
    "FetchedMessage",
    "FolderState",
    "ImapAuthError",
    "ImapClient",
    "ImapFolderError",
    "ImapUnavailable",
]
