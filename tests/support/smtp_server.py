"""A real aiosmtpd server on a free loopback port, for the SMTP sender's tests.

It records what it accepted and can be told to misbehave the way real relays
do: answer the next N DATA commands with a 4xx or 5xx, or refuse named
recipients at RCPT TO. It counts EHLOs so tests can see connection reuse, and
can be stopped and started again on the same port (a relay restart).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        # SMTP's CRLF line ends, as a local file would have them, so bodies compare as str.
        msg = message_from_bytes(self.data.replace(b"\r\n", b"\n"), policy=policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class Recorder:
    """The handler: aiosmtpd calls its hooks from the server's own thread."""

    received: list[Received] = field(default_factory=list)
    ehlos: int = 0
    refuse: dict[str, str] = field(default_factory=dict)
    _data_answers: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def answer_data(self, status: str, times: int = 1) -> None:
        """Answer the next `times` DATA commands with `status` (e.g. "451 4.3.0 Busy")."""
        with self._lock:
            self._data_answers.extend([status] * times)

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        with self._lock:
            self.ehlos += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        status = self.refuse.get(address.lower())
        if status:
            return status
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._lock:
            if self._data_answers:
                return self._data_answers.pop(0)
            content = envelope.original_content or b""
            self.received.append(
                Received(str(envelope.mail_from), list(envelope.rcpt_tos), bytes(content))
            )
        return "250 2.0.0 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class SmtpServer:
    """An aiosmtpd Controller that can be restarted on the same port."""

    def __init__(self) -> None:
        self.handler = Recorder()
        self.host = "127.0.0.1"
        self.port = free_port()
        self._controller: Controller | None = None

    def start(self) -> None:
        kwargs: dict[str, Any] = {"hostname": self.host, "port": self.port}
        # decode_data=False keeps the raw bytes; SMTPUTF8 and 8BITMIME offered like a real relay.
        self._controller = Controller(self.handler, enable_SMTPUTF8=True, **kwargs)
        self._controller.start()

    def stop(self) -> None:
        """Stop listening and drop every open session, like a relay being restarted."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def received(self) -> list[Received]:
        return self.handler.received


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
