"""IDLE reads the server's notices however they are cut into reads.

Dovecot cannot be made to split a line across TCP segments or TLS records, so
these tests talk to a scripted fake server on a real socket, plain and TLS
(with a throwaway self-signed certificate from `openssl req`): lines split in
two sends, a burst of thousands of FETCH lines, literals whose content looks
like a response, and IDLE ending in the middle of a response. After each
IDLE the connection must still be in step: a SELECT parses as usual. The
reader itself is also fed a stream cut at every position over a socketpair.
Dovecot's own burst is in test_imap_client.py.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest

from channels.email.config import ImapConfig
from channels.email.imap import FolderState, ImapClient, ImapUnavailable
from channels.email.imap_idle import IdleReader
from tests.support.imap import WAIT

# What the fake sends during IDLE: bytes (sent and flushed on their own), a
# pause in seconds, or None to hang up. b"{tag}" becomes the IDLE's tag.
Step = bytes | float | None
SELECTED = FolderState(7, 5)


@dataclass
class FakeImap:
    """Login, SELECT (always `SELECTED`), NOOP, and IDLE playing `script`."""

    tls: ssl.SSLContext | None
    script: list[Step] = field(default_factory=list)
    commands: list[bytes] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def send(data: bytes) -> None:
            writer.write(data)
            await writer.drain()

        await send(b"* OK [CAPABILITY IMAP4rev1 IDLE] ready\r\n")
        while line := await reader.readline():
            tag, command = line.split()[:2]
            command = command.upper()
            self.commands.append(command)
            if command == b"CAPABILITY":
                await send(b"* CAPABILITY IMAP4rev1 IDLE\r\n%s OK done\r\n" % tag)
            elif command == b"SELECT":
                await send(
                    b"* 4 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT 5] ok\r\n"
                    b"%s OK [READ-WRITE] done\r\n" % tag
                )
            elif command == b"IDLE":
                await send(b"+ idling\r\n")
                for step in self.script:
                    if step is None:
                        writer.close()
                        return
                    if isinstance(step, float):
                        await asyncio.sleep(step)
                    else:
                        await send(step.replace(b"{tag}", tag))
                self.commands.append((await reader.readline()).strip())
                await send(b"%s OK idle done\r\n" % tag)
            elif command == b"LOGOUT":
                await send(b"* BYE bye\r\n%s OK bye\r\n" % tag)
                break
            else:
                await send(b"%s OK done\r\n" % tag)
        writer.close()


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ssl.SSLContext]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not installed: no certificate for the TLS fake")
    tmp = tmp_path_factory.mktemp("tls")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    yield context


@pytest.fixture(params=["plain", "tls"])
async def fake(request: pytest.FixtureRequest) -> AsyncIterator[FakeImap]:
    tls = request.getfixturevalue("server_tls") if request.param == "tls" else None
    server = FakeImap(tls)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=tls)
    server.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield server


@pytest.fixture
async def client(fake: FakeImap) -> AsyncIterator[ImapClient]:
    cfg = ImapConfig(
        host="127.0.0.1",
        port=fake.port,
        tls="ssl" if fake.tls else "none",
        validate_certs=False,
        user="u",
        timeout=5.0,
    )
    client = ImapClient("support", cfg, "secret")
    try:
        await client.connect()
        assert await client.select("INBOX") == SELECTED
        yield client
    finally:
        await client.close()


async def idle(client: ImapClient, seconds: float) -> tuple[bool, float]:
    started = time.monotonic()
    result = await asyncio.wait_for(client.idle(seconds), WAIT)
    return result, time.monotonic() - started


async def in_step(client: ImapClient, fake: FakeImap) -> None:
    """The stream is where imaplib expects it: DONE was answered, SELECT parses."""
    assert fake.commands[-1] == b"DONE"
    assert await client.select("INBOX") == SELECTED
    assert fake.commands.count(b"LOGIN") == 1  # never reconnected


async def test_exists_split_across_two_sends_is_one_line(
    fake: FakeImap, client: ImapClient
) -> None:
    fake.script = [b"* 5 EXI", 0.3, b"STS\r\n"]
    assert (await idle(client, WAIT))[0] is True
    await in_step(client, fake)


async def test_a_burst_of_fetch_lines_keeps_the_connection(
    fake: FakeImap, client: ImapClient
) -> None:
    """Someone marks 3000 messages read in another client while we idle."""
    burst = b"".join(b"* %d FETCH (FLAGS (\\Seen))\r\n" % i for i in range(1, 3001))
    # 4093 bytes at a time: most sends end in the middle of a line.
    fake.script = [
        step for i in range(0, len(burst), 4093) for step in (burst[i : i + 4093], 0.002)
    ]
    new_mail, _ = await idle(client, 1.5)
    assert new_mail is False  # flag changes are not mail; IDLE ran to its end
    await in_step(client, fake)
    fake.script = [burst, b"* 3001 EXISTS\r\n"]
    assert (await idle(client, WAIT))[0] is True
    await in_step(client, fake)


async def test_exists_inside_a_literal_is_not_new_mail(fake: FakeImap, client: ImapClient) -> None:
    # 20 bytes of literal: a header line and one that looks like an announcement.
    fake.script = [
        b"* 1 FETCH (BODY[HEADER.FIELDS (X-A)] {20}\r\nX-A: ",
        0.2,
        b"1\r\n* 9 EXI",
        0.2,
        b"STS\r\n)\r\n",
    ]
    new_mail, _ = await idle(client, 1.0)
    assert new_mail is False
    await in_step(client, fake)


async def test_idle_ending_in_the_middle_of_a_line_completes_it_first(
    fake: FakeImap, client: ImapClient
) -> None:
    """The tail of a line read during IDLE is not lost for imaplib, nor what follows it."""
    fake.script = [
        b"* 1 FETCH (FLAGS (\\Seen))\r\n* 2 FET",
        1.0,
        b"CH (FLAGS (\\Seen))\r\n* 3 FETCH (FLAGS (\\Seen))\r\n",
    ]
    new_mail, took = await idle(client, 0.3)
    assert new_mail is False
    assert took >= 0.9  # waited for the rest of "* 2 FETCH" before DONE
    await in_step(client, fake)


async def test_idle_ending_in_the_middle_of_a_literal_skips_the_rest(
    fake: FakeImap, client: ImapClient
) -> None:
    fake.script = [b"* 1 FETCH (BODY[] {20}\r\nX-A: 1\r\n", 1.0, b"* 9 EXISTS\r\n)\r\n"]
    new_mail, _ = await idle(client, 0.3)
    assert new_mail is False
    await in_step(client, fake)


async def test_idle_ending_as_mail_is_announced_in_pieces(
    fake: FakeImap, client: ImapClient
) -> None:
    fake.script = [b"* 6 EXI", 1.0, b"STS\r\n"]
    assert (await idle(client, 0.3))[0] is True
    await in_step(client, fake)


async def test_interrupt_ends_idle_promptly(fake: FakeImap, client: ImapClient) -> None:
    fake.script = [b"* 1 FETCH (FLAGS ())\r\n"]
    loop = asyncio.get_running_loop()
    loop.call_later(0.3, client.interrupt)
    new_mail, took = await idle(client, 600)
    assert new_mail is False
    assert took < 3


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ([b"* BYE shutting down\r\n", None], "BYE"),
        ([b"* 5 EXI", None], "closed"),
        ([None], "closed"),
        ([b"{tag} OK IDLE terminated\r\n", None], "ended IDLE"),
    ],
    ids=["bye", "hangup-mid-line", "hangup", "tagged"],
)
async def test_server_ending_the_session_is_unavailable(
    fake: FakeImap, client: ImapClient, script: list[Step], message: str
) -> None:
    fake.script = script
    with pytest.raises(ImapUnavailable, match=message):
        await idle(client, WAIT)


RESPONSES = [
    b"* 1 FETCH (FLAGS (\\Seen))\r\n",
    b"* 2 FETCH (BODY[] {14}\r\n* 9 EXISTS\r\n BODY[TEXT] {0}\r\n)\r\n",
    b"\r\n",
    b"* 3 FETCH (BINARY[] ~{3}\r\n\r\n\n)\r\n",
    b"* 10 EXISTS\r\n",
]
STREAM = b"".join(RESPONSES)
BOUNDARIES = {len(b"".join(RESPONSES[:n])) for n in range(len(RESPONSES) + 1)}
STARTS = [
    b"* 1 FETCH (FLAGS (\\Seen))",
    b"* 2 FETCH (BODY[] {14}",
    b"",
    b"* 3 FETCH (BINARY[] ~{3}",
    b"* 10 EXISTS",
]


@pytest.mark.parametrize("cut", range(len(STREAM) + 1))
def test_reader_finds_the_same_responses_wherever_the_stream_is_cut(cut: int) -> None:
    ours, server = socket.socketpair()
    with ours, server:
        reader = IdleReader(ours)
        server.sendall(STREAM[:cut])
        starts = reader.read_available()
        assert reader.at_boundary == (cut in BOUNDARIES)
        server.sendall(STREAM[cut:])
        starts += reader.read_available()
        assert starts == STARTS
        assert reader.at_boundary and not reader.eof


def test_reader_finish_reads_no_further_than_the_response() -> None:
    ours, server = socket.socketpair()
    with ours, server:
        reader = IdleReader(ours)
        server.sendall(b"* 1 FETCH (BODY[] {5}\r\nab")
        assert reader.read_available() == [b"* 1 FETCH (BODY[] {5}"]
        server.sendall(b"cde)\r\nA001 OK done\r\n")
        assert reader.finish(5.0) == []
        assert reader.at_boundary
        assert ours.recv(100) == b"A001 OK done\r\n"  # left for imaplib
