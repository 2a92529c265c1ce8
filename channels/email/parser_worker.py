"""The mail parser's worker process: `main([IN, OUT, MEMORY])`, started by parser_pool.py.

Reads `ParseJob`s from file descriptor IN and answers each on OUT, under an
address-space limit of MEMORY bytes (RLIMIT_AS), until IN closes. A process
of its own (not a fork of the hub, not multiprocessing's spawn, which would
re-run the hub's main module) so that whatever a message does to it, the
hub only sees a reply, a timeout or an exit.
"""

from __future__ import annotations

import contextlib
import resource
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any

from channels.email.errors import UnparseableEmail
from channels.email.limits import MailLimits
from channels.email.parse import read_message


@dataclass(frozen=True, slots=True)
class ParseJob:
    raw: bytes
    max_attachment_bytes: int
    received_at: datetime | None
    limits: MailLimits


def serve(jobs: Connection, replies: Connection, memory_bytes: int) -> None:
    """One job in, one reply out: ("ok", ParsedMail) or (status, detail)."""
    with contextlib.suppress(ValueError, OSError):  # a limit below current use: run without
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    while True:
        reply: tuple[str, Any]
        try:
            job: ParseJob = jobs.recv()
        except (EOFError, OSError):
            return
        except Exception as exc:  # a job that does not unpickle fails alone
            replies.send(("error", f"{type(exc).__name__}: {exc}"))
            continue
        try:
            parsed = read_message(
                job.raw,
                max_bytes=job.max_attachment_bytes,
                received_at=job.received_at,
                limits=job.limits,
            )
            reply = ("ok", parsed)
        except UnparseableEmail as exc:
            reply = ("refused", str(exc))
        except MemoryError:
            reply = ("memory", None)
        except RecursionError:
            reply = ("refused", "MIME structure too deep to parse")
        except Exception as exc:  # a parser bug: report it, the next message is fine
            reply = ("error", f"{type(exc).__name__}: {exc}")
        try:
            replies.send(reply)
        except MemoryError:
            reply = ("memory", None)
            replies.send(reply)
        if reply[0] == "memory":
            return  # the heap may be in any state after a MemoryError: start afresh


def main(argv: list[str]) -> None:
    jobs_fd, replies_fd, memory = (int(a) for a in argv)
    serve(Connection(jobs_fd, writable=False), Connection(replies_fd, readable=False), memory)
