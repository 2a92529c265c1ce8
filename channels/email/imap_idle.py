"""The server's notices during IDLE, read off the socket without losing a byte.

imaplib reads whole lines through a buffered file and has no notion of
"nothing more yet": on a non-blocking socket a line split across TCP segments
or TLS records ends its readline early, and it either aborts ("unterminated
line") or, on TLS, drops what it had read so far. So while idling the client
reads the socket itself into its own buffer: whatever is there, without
waiting. Only complete CRLF-terminated lines are handed on, an unfinished tail
waits for the next read, and literals (a line ending in `{n}` is followed by
n bytes of data, then the rest of the line) are skipped unread, so text
inside one is never taken for a response.

imaplib must then find the stream where it left it. At the start the reader
takes over what imaplib's file had already buffered; at the end `finish()`
reads, blocking, exactly up to the end of the response in progress (byte by
byte within a line, exact counts within a literal), so nothing past it leaves
the socket and the tagged answer to DONE is there for imaplib to read.
"""

from __future__ import annotations

import imaplib
import re
import select
import socket
import ssl
import time
from typing import Protocol

# imaplib's own bound on a line (its _MAXLINE): a longer one is a broken server.
MAX_LINE = 1_000_000
READ_SIZE = 65536
# Read at most this much per pass, so a flood cannot hold off a stop request.
MAX_READ_PER_PASS = 1 << 20
# Nothing to read just now (a TLS socket may also want to write, renegotiating).
_NOT_READY = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
_LITERAL = re.compile(rb"~?\{(\d+)\}\Z")


class BufferedFile(Protocol):
    def peek(self, size: int = ..., /) -> bytes: ...
    def read(self, size: int | None = ..., /) -> bytes: ...


class IdleReader:
    """Responses the server sends while idling, by their first line.

    A response's first line is up to the CRLF or to its first literal; the
    rest of it (literal data and what follows) is consumed but not reported.
    `eof` turns True once the server closed the connection.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = bytearray()
        self._literal = 0  # literal bytes still to skip
        self._continued = False  # inside a response, after one of its literals
        self._more = False  # a pass stopped early: data may be waiting unseen by select()
        self.eof = False

    @property
    def at_boundary(self) -> bool:
        """Between two responses: nothing of an unfinished one has been read."""
        return not self._buf and not self._literal and not self._continued

    def take_buffered(self, file: BufferedFile) -> list[bytes]:
        """Take over what imaplib read ahead of the IDLE continuation.

        Dovecot announces pending mail right after "+ idling", often in the
        same packet; select() cannot see it in imaplib's buffer.
        """
        timeout = self._sock.gettimeout()
        self._sock.setblocking(False)
        try:
            # The buffered bytes; with none, one read of what the socket has.
            buffered = file.peek()
        except _NOT_READY:
            return []
        finally:
            self._sock.settimeout(timeout)
        if not buffered and isinstance(self._sock, ssl.SSLSocket):
            # TLS says "nothing yet" by raising: this is the end (and, read,
            # it no longer makes the socket readable). A plain socket's EOF
            # stays readable and shows again.
            self.eof = True
        file.read(len(buffered))  # served from the buffer: no socket read
        return self._feed(buffered)

    def wait(self, seconds: float) -> bool:
        """Wait up to `seconds` for something to read (or the server to hang up)."""
        if self._more or (isinstance(self._sock, ssl.SSLSocket) and self._sock.pending()):
            return True
        readable, _, _ = select.select([self._sock], [], [], seconds)
        return bool(readable)

    def read_available(self) -> list[bytes]:
        """First lines of the responses completed by what can be read now, without waiting."""
        starts: list[bytes] = []
        total = 0
        self._more = False
        timeout = self._sock.gettimeout()
        self._sock.setblocking(False)
        try:
            while not self.eof:
                if total >= MAX_READ_PER_PASS:
                    self._more = True
                    break
                try:
                    data = self._sock.recv(READ_SIZE)
                except _NOT_READY:  # TLS: also a record not yet complete
                    break
                if not data:
                    self.eof = True
                    break
                total += len(data)
                starts += self._feed(data)
        finally:
            self._sock.settimeout(timeout)
        return starts

    def finish(self, seconds: float) -> list[bytes]:
        """Read, blocking, to the end of an unfinished response, and not a byte further.

        The server has begun sending it and completes it promptly; one that
        stalls for `seconds` is dead (TimeoutError).
        """
        starts: list[bytes] = []
        deadline = time.monotonic() + seconds
        timeout = self._sock.gettimeout()
        try:
            while not self.at_boundary and not self.eof:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("server stalled in the middle of a response")
                self._sock.settimeout(remaining)
                # Where a line ends is unknown until its CRLF arrives: byte by byte.
                data = self._sock.recv(min(self._literal, READ_SIZE) if self._literal else 1)
                if not data:
                    self.eof = True
                    break
                starts += self._feed(data)
        finally:
            self._sock.settimeout(timeout)
        return starts

    def _feed(self, data: bytes) -> list[bytes]:
        if self._literal:
            skip = min(self._literal, len(data))
            self._literal -= skip
            data = data[skip:]
        self._buf += data
        starts: list[bytes] = []
        while not self._literal:
            end = self._buf.find(b"\r\n")
            if end < 0:
                break
            line = bytes(self._buf[:end])
            del self._buf[: end + 2]
            if not self._continued:
                starts.append(line)
            literal = _LITERAL.search(line)
            self._continued = literal is not None
            if literal is not None:
                size = int(literal[1])
                skip = min(size, len(self._buf))
                del self._buf[:skip]
                self._literal = size - skip
        if len(self._buf) > MAX_LINE:
            raise imaplib.IMAP4.abort(f"line longer than {MAX_LINE} bytes during IDLE")
        return starts


__all__ = ["IdleReader"]
