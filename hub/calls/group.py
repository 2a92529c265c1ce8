"""Group commit for call events: the events that arrive while one group is being stored
wait and go in the next group, one transaction for all of them.

A call event cost ~10 ms alone (one commit, the identity match and the
history insert for one contact), which capped a node at ~90 calls/s; in
groups they share the commit and the set-based statements of
`CallLog._advance_group` (hub/calls/service.py). At most one event per call
is in a group, so a call's events are applied in their order of arrival.
When a group fails, its events are retried one by one (so only a bad one
fails), each twice: the first event of one call arriving at two nodes at
once collides on the call's and the history entry's unique keys, and the
second try finds the other node's rows and merges into them.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from channels.base import CallEvent
from hub.ingest.context import Prepared
from hub.ingest.pipeline import IngestError, IngestUnavailable
from hub.records.lookup import PopCards
from hub.runtime import Hub
from routing.calls import CallRecord

log = logging.getLogger(__name__)

# Call events per transaction; the pipeline's own batches are larger, but each
# call also advances its state row in the same transaction.
GROUP_MAX = 256


@dataclass(slots=True)
class Outcome:
    before: CallRecord | None = None
    after: CallRecord | None = None
    customer_id: int | None = None
    # The call's history entry (None: a withheld number, logged on the call only).
    interaction_id: int | None = None
    conversation_id: int | None = None
    created_customer: bool = False
    team_id: int | None = None
    ringing_ids: list[int] = field(default_factory=list)
    audience: frozenset[int] = frozenset()
    answered_id: int | None = None
    targets: list[str] = field(default_factory=list)
    task_id: int | None = None
    task_assignee: int | None = None
    # The team a PBX queue routed the call to (its first event's, kept on the call).
    route_team_id: int | None = None
    # The event with the numbers and direction of the call's first event.
    event: CallEvent | None = None
    # A new pop's caller cards, read in the group's transaction (advance.py).
    cards: PopCards | None = None


class CallWriter(Protocol):
    """What stores a group (hub/calls/service.py's CallLog)."""

    @property
    def hub(self) -> Hub: ...

    async def _advance_group(self, conn: AsyncConnection, group: list[Pending]) -> None: ...

    def _publish(self, event: CallEvent, out: Outcome) -> None: ...


@dataclass(slots=True)
class Pending:
    event: CallEvent
    items: list[Prepared]
    future: asyncio.Future[str]
    route_team_id: int | None = None  # from the event's PBX queue (voice.pbx.queues)
    outcome: Outcome = field(default_factory=Outcome)

    @property
    def key(self) -> tuple[str, str]:
        return (self.event.provider.value, self.event.call_id)


class Batcher:
    """Call events of one hub, stored in groups (see the module docstring).

    No task lives longer than the work: the first event that finds nobody
    storing starts a drain task, which ends when nothing is pending.
    """

    def __init__(self, hub: Hub, writer: Callable[[Hub], CallWriter]) -> None:
        # Weak: the batcher is the value of a WeakKeyDictionary keyed by this hub.
        self._hub = weakref.ref(hub)
        self._writer = writer
        self.pending: list[Pending] = []
        self.running: asyncio.Task[None] | None = None

    async def submit(
        self, event: CallEvent, items: list[Prepared], route_team_id: int | None
    ) -> str:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.pending.append(Pending(event, items, future, route_team_id))
        if self.running is None or self.running.done():
            self.running = asyncio.create_task(self._drain(), name="call-log")
        # shield: a provider that hangs up on us must not cancel the group's work.
        return await asyncio.shield(future)

    def _take(self) -> list[Pending]:
        group: list[Pending] = []
        keys: set[tuple[str, str]] = set()
        rest: list[Pending] = []
        for p in self.pending:
            if p.key in keys or len(group) >= GROUP_MAX:
                rest.append(p)  # a call's later event waits for the next group
            else:
                keys.add(p.key)
                group.append(p)
        self.pending = rest
        return group

    async def _drain(self) -> None:
        while self.pending:
            group = self._take()
            try:
                await self._store(group)
            except Exception as exc:  # never leave a provider waiting
                log.exception("call events not stored")
                for p in group:
                    if not p.future.done():
                        p.future.set_exception(exc)

    async def _store(self, group: list[Pending]) -> None:
        try:
            await self._once(group)
        except IngestUnavailable as exc:
            for p in group:
                p.future.set_exception(exc)
            return
        except IngestError as exc:
            if len(group) == 1:
                await self._alone(group[0], exc)
            else:
                log.info("group of %d call events failed; retrying one by one", len(group))
                for p in group:
                    await self._alone(p, exc)
            return
        self._done(group)

    async def _alone(self, p: Pending, failure: Exception) -> None:
        """Once more, alone: a row another node stored meanwhile is seen now."""
        try:
            await self._once([p])
        except (IngestError, IngestUnavailable) as exc:
            log.info("call event %s %s refused: %s", p.event.call_id, p.event.kind.value, exc)
            p.future.set_exception(exc if isinstance(exc, IngestUnavailable) else failure)
            return
        self._done([p])

    @property
    def calls(self) -> CallWriter:
        hub = self._hub()
        if hub is None:
            raise RuntimeError("the hub of these calls is gone")
        return self._writer(hub)

    async def _once(self, group: list[Pending]) -> None:
        calls = self.calls
        for p in group:
            p.outcome = Outcome()

        async def extra(conn: AsyncConnection, _prepared: list[Prepared]) -> None:
            await calls._advance_group(conn, group)

        items = [item for p in group for item in p.items]
        await calls.hub.ingestor.ingest_unit(items, extra)

    def _done(self, group: list[Pending]) -> None:
        calls = self.calls
        for p in group:
            p.future.set_result("\n".join(p.outcome.targets))
            calls._publish(p.outcome.event or p.event, p.outcome)


BATCHERS: weakref.WeakKeyDictionary[Hub, Batcher] = weakref.WeakKeyDictionary()


def batcher_of(hub: Hub, writer: Callable[[Hub], CallWriter]) -> Batcher:
    """The hub's batcher; `writer` (CallLog) advances and publishes its groups."""
    batcher = BATCHERS.get(hub)
    if batcher is None:
        batcher = BATCHERS[hub] = Batcher(hub, writer)
    return batcher
