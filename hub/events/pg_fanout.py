"""Events between `crmhub serve` nodes on one PostgreSQL: LISTEN/NOTIFY on `crmhub_events`.

A node NOTIFYs the events it numbered, with their ids and data, so the
others deliver them without a query; a batch is split into payloads under
NOTIFY's 8,000-byte limit, and an event that alone would pass it goes as its
id once its row is stored (`notify_stored`), and the others fetch that row
from event_log. Each payload names its node, so a node ignores its own. The listening connection
is one asyncpg connection outside the pool; when it drops, it is opened
again (events stored meanwhile reach reconnecting clients by replay).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

CHANNEL = "crmhub_events"
# ids per NOTIFY: far below the 8,000-byte payload limit.
IDS_PER_NOTIFY = 500
# Inline events up to this many bytes per payload (NOTIFY refuses more than 7,999).
INLINE_BYTES = 7_500


NOTIFY_ALL = "SELECT count(pg_notify($1, p)) FROM unnest($2::text[]) AS p"
NEXT_IDS = "SELECT nextval(pg_get_serial_sequence('event_log', 'id')) FROM generate_series(1, $1)"


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Listener:
    def __init__(
        self,
        url: str,
        deliver: Callable[[list[int]], Coroutine[Any, Any, None]],
        deliver_inline: Callable[[list[dict[str, Any]]], None],
    ) -> None:
        self.dsn = _dsn(url)
        self.deliver = deliver
        self.deliver_inline = deliver_inline
        self.node = uuid.uuid4().hex[:12]
        self._conn: Any = None
        self._watch: asyncio.Task[None] | None = None
        self._closing = False
        # Events too big to go inline, announced by id once stored.
        self._by_id: set[int] = set()
        # One operation at a time on the connection (the stream and its storer share it).
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        await self._connect()
        self._watch = asyncio.create_task(self._keep_open(), name="event-listener")

    async def _connect(self) -> None:
        self._conn = await asyncpg.connect(self.dsn)
        await self._conn.add_listener(CHANNEL, self._on_notify)

    def _on_notify(self, conn: Any, pid: int, _channel: str, payload: str) -> None:
        if pid == conn.get_server_pid():
            # Our own NOTIFY, sent on this connection: delivered locally already, and
            # not worth decoding (~3 % of a PostgreSQL node's ingest CPU was this).
            return
        try:
            message = json.loads(payload)
        except ValueError:
            return
        if message.get("node") == self.node:
            return  # delivered locally already
        events = message.get("events")
        if isinstance(events, list):
            self.deliver_inline(events)
            return
        ids = [int(i) for i in message.get("ids", [])]
        if ids:
            task: asyncio.Task[None] = asyncio.get_running_loop().create_task(self.deliver(ids))
            task.add_done_callback(_log_failure)

    async def notify(self, events: list[tuple[int, str]]) -> None:
        """`events`: numbered events as (id, JSON of {"id", "kind", "data", "team_id",
        "users"}: Frame.node_text), in order."""
        if not events or self._conn is None:
            return
        payloads: list[str] = []
        chunk: list[str] = []
        size = 0
        head = len(json.dumps({"node": self.node, "events": []}))
        for event_id, text in events:
            length = len(text.encode())
            if head + length > INLINE_BYTES:
                self._by_id.add(event_id)
                continue
            if chunk and head + size + length + 2 > INLINE_BYTES:
                payloads.append(self._inline(chunk))
                chunk, size = [], 0
            chunk.append(text)
            size += length + 2
        if chunk:
            payloads.append(self._inline(chunk))
        await self._send(payloads)

    def _inline(self, texts: list[str]) -> str:
        return f'{{"node": {json.dumps(self.node)}, "events": [{", ".join(texts)}]}}'

    async def notify_stored(self, ids: list[int]) -> None:
        """Announce, by id, the stored events that were too big to go inline."""
        big = [i for i in ids if i in self._by_id]
        if not big:
            return
        self._by_id.difference_update(big)
        await self._send(
            [
                json.dumps({"node": self.node, "ids": big[start : start + IDS_PER_NOTIFY]})
                for start in range(0, len(big), IDS_PER_NOTIFY)
            ]
        )

    async def _send(self, payloads: list[str]) -> None:
        """NOTIFY `payloads`, in order, in one statement (one round trip, where a burst
        of ingest events took one per 7.5 kB payload)."""
        if not payloads or self._conn is None:
            return
        try:
            async with self._lock:
                if len(payloads) == 1:
                    await self._conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payloads[0])
                else:
                    # unnest yields the array in order, and one transaction's
                    # notifications are delivered in the order they were sent.
                    # PostgreSQL drops a payload identical to an earlier one of the
                    # same transaction; ours never are (each names other event ids).
                    # All or nothing: every payload is under INLINE_BYTES of ASCII
                    # JSON, so none can be refused alone.
                    await self._conn.execute(NOTIFY_ALL, CHANNEL, payloads)
        except Exception:
            log.warning("could not notify other nodes of events", exc_info=True)

    async def next_ids(self, n: int) -> list[int]:
        """`n` ids from event_log's sequence in one round trip on this connection (no
        pool, no transaction); raises when the connection is down."""
        if self._conn is None or self._conn.is_closed():
            raise ConnectionError("event listener not connected")
        async with self._lock:
            rows = await self._conn.fetch(NEXT_IDS, n)
        return sorted(int(r[0]) for r in rows)

    async def _keep_open(self) -> None:
        while not self._closing:
            await asyncio.sleep(5)
            if self._conn is None or self._conn.is_closed():
                with contextlib.suppress(Exception):
                    await self._connect()
                    log.info("event listener reconnected")

    async def close(self) -> None:
        self._closing = True
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("events from another node not delivered", exc_info=task.exception())
