"""In-process event bus: screen pops and console updates subscribe here.

Publishing never blocks the pipeline: a subscriber that falls behind loses
its oldest events rather than slowing ingest down, and the next thing it
reads is one `bus.overflow` event saying how many it lost, so a console
knows to reload instead of showing a silently incomplete picture. Later, a
PostgreSQL LISTEN/NOTIFY bridge republishes events from other nodes here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

# Defined here, not in kinds.py, because only the bus itself sends it.
OVERFLOW_KIND = "bus.overflow"


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    # The team whose members may see it (None: admins only).
    team_id: int | None = None
    # When set, only these users receive it (a screen pop goes to the agents a
    # call rings at, not to their whole team); team_id still names the owner.
    users: frozenset[int] | None = None
    # Renderings its publisher already has (a pop's caller cards read in the call's own
    # transaction, hub/calls/advance.py); handed to the frame, not part of the event's value.
    cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


class Subscription:
    """One subscriber's bounded queue, with the count of what it lost since it last read."""

    def __init__(self, size: int) -> None:
        self._queue: asyncio.Queue[Event] = asyncio.Queue(size)
        self._dropped = 0

    def put(self, event: Event) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            if not self._dropped:
                log.warning("event subscriber too slow; dropping its oldest events")
            self._dropped += 1
        self._queue.put_nowait(event)

    def _overflow(self) -> Event | None:
        if not self._dropped:
            return None
        # Everyone may see it: it says only that events were lost, not which.
        event = Event(OVERFLOW_KIND, {"dropped": self._dropped})
        self._dropped = 0
        return event

    def get_nowait(self) -> Event:
        return self._overflow() or self._queue.get_nowait()

    async def get(self) -> Event:
        return self._overflow() or await self._queue.get()

    def empty(self) -> bool:
        return not self._dropped and self._queue.empty()

    def qsize(self) -> int:
        return self._queue.qsize() + (1 if self._dropped else 0)


class EventBus:
    def __init__(self, queue_size: int = 1000) -> None:
        self._subscribers: set[Subscription] = set()
        self._queue_size = queue_size

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        subscription = Subscription(self._queue_size)
        self._subscribers.add(subscription)
        try:
            yield subscription
        finally:
            self._subscribers.discard(subscription)

    def publish(self, event: Event) -> None:
        for subscription in self._subscribers:
            subscription.put(event)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)
