"""Mail parsing in worker processes: a hostile message costs one message, never the hub.

The limits in limits.py refuse the bombs we know of before the expensive
work; this pool is the net for the ones we do not. Each worker is a process
of its own with an address-space limit (RLIMIT_AS), and each message gets a
wall-clock limit. A worker that runs out of memory, crashes or overruns is
killed and replaced, and the message fails with the reason, so the mailbox
quarantines it and moves its checkpoint past it: the next start does not
read it again (no crash loop), and parsing never holds up the event loop
that answers webhooks and API requests.

Workers are new interpreters (parser_worker.py), never forks of the hub
with its threads and sockets; one starts in ~0.2 s and stays for the next
message, so only a killed worker costs a start. One pool per set of limits
is shared by everything in a process (every mailbox, the quarantine's
retry) through `ParserPool.shared`.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any

from channels.email.errors import UnparseableEmail
from channels.email.limits import MailLimits
from channels.email.parse import ParsedMail
from channels.email.parser_worker import ParseJob

__all__ = ["ParseJob", "ParserFailed", "ParserPool"]

log = logging.getLogger(__name__)

MB = 1_000_000


class ParserFailed(UnparseableEmail):
    """The worker died, overran its time, or ran out of memory on this message."""


class _Worker:
    """One worker process and the two pipes to it."""

    def __init__(self, memory_bytes: int) -> None:
        jobs_r, jobs_w = os.pipe()
        replies_r, replies_w = os.pipe()
        env = dict(os.environ)
        # The hub's import path, so the worker finds this package however the hub was started.
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "import sys; from channels.email.parser_worker import main; main(sys.argv[1:])",
                    str(jobs_r),
                    str(replies_w),
                    str(memory_bytes),
                ],
                pass_fds=(jobs_r, replies_w),
                stdin=subprocess.DEVNULL,
                env=env,
            )
        finally:
            os.close(jobs_r)
            os.close(replies_w)
        self.jobs = Connection(jobs_w, readable=False)
        self.replies = Connection(replies_r, writable=False)

    def call(self, job: ParseJob, timeout: float) -> tuple[str, Any]:
        """Send a job and wait for the reply; ("timeout"|"died", detail) when none comes."""
        try:
            self.jobs.send(job)
            if not self.replies.poll(timeout):
                return ("timeout", None)
            reply: tuple[str, Any] = self.replies.recv()
            return reply
        except (EOFError, OSError):
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(1)
            return ("died", self.process.returncode)

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.process.kill()
            self.process.wait(5)
        for conn in (self.jobs, self.replies):
            with contextlib.suppress(Exception):
                conn.close()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


class ParserPool:
    """`parse` runs `read_message` in a worker within `timeout` seconds and `memory_bytes`."""

    _shared: dict[tuple[int, float, int], ParserPool] = {}
    _shared_lock = threading.Lock()

    def __init__(self, workers: int, timeout: float, memory_bytes: int) -> None:
        self.size = workers
        self.timeout = timeout
        self.memory_bytes = memory_bytes
        self._idle: list[_Worker] = []
        self._free: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self.replaced = 0  # workers killed and replaced (tests, logs)

    @classmethod
    def shared(cls, limits: MailLimits) -> ParserPool:
        key = (limits.parser_workers, limits.parser_timeout_seconds, limits.parser_memory_bytes)
        with cls._shared_lock:
            pool = cls._shared.get(key)
            if pool is None:
                pool = cls._shared[key] = cls(*key)
            return pool

    def _semaphore(self) -> asyncio.Semaphore:
        # One per event loop: tests run several loops in one process.
        loop = asyncio.get_running_loop()
        if self._free is None or self._loop is not loop:
            self._free = asyncio.Semaphore(self.size)
            self._loop = loop
        return self._free

    def _take(self) -> _Worker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive:
                    return worker
                worker.kill()
        return _Worker(self.memory_bytes)

    def _give_back(self, worker: _Worker) -> None:
        with self._lock:
            if len(self._idle) < self.size:
                self._idle.append(worker)
                return
        worker.kill()

    def _run(self, job: ParseJob) -> ParsedMail:
        worker = self._take()
        status, detail = worker.call(job, self.timeout)
        if status in ("ok", "refused", "error"):
            self._give_back(worker)
        else:
            worker.kill()
            self.replaced += 1
        if status == "ok":
            assert isinstance(detail, ParsedMail)
            return detail
        if status == "refused":
            raise UnparseableEmail(detail)
        if status == "error":
            raise ParserFailed(f"parser error: {detail}")
        if status == "timeout":
            raise ParserFailed(
                f"parsing took longer than {self.timeout:g} s; the worker was killed"
            )
        if status == "memory":
            raise ParserFailed(
                f"parsing needed more than the parser's memory limit of "
                f"{self.memory_bytes // MB} MB; the worker was restarted"
            )
        raise ParserFailed(f"the parser process died (exit code {detail})")

    async def parse(self, job: ParseJob) -> ParsedMail:
        """Parse in a worker; UnparseableEmail (or ParserFailed) with the reason when it fails.

        The wait happens in a thread, so the event loop stays free; the
        semaphore keeps at most `size` messages in the workers at once.
        """
        async with self._semaphore():
            return await asyncio.to_thread(self._run, job)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.kill()

    @classmethod
    def close_all(cls) -> None:
        with cls._shared_lock:
            pools = list(cls._shared.values())
        for pool in pools:
            pool.close()


atexit.register(ParserPool.close_all)
