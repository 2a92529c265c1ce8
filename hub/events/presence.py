"""Who is online: agents with a live event-stream connection and status "available".

Assignment (routing/) asks for the online agents; the event stream
(/api/v1/events) reports connections; agents set their status through the
API. Kept in memory per node: a restart drops every connection anyway, and
with several nodes each node knows its own connections (a call's pop is sent
by whichever node holds the agent's socket).
"""

from __future__ import annotations

import enum
from collections import Counter


class Status(enum.StrEnum):
    AVAILABLE = "available"
    AWAY = "away"


class Presence:
    def __init__(self) -> None:
        self._connections: Counter[int] = Counter()
        self._status: dict[int, Status] = {}
        # `online()` is asked for every group of calls and batch of contacts, and
        # changes only when someone connects, leaves or sets a status.
        self._online: frozenset[int] | None = None

    def connected(self, user_id: int) -> None:
        self._connections[user_id] += 1
        self._online = None

    def disconnected(self, user_id: int) -> None:
        self._connections[user_id] -= 1
        if self._connections[user_id] <= 0:
            del self._connections[user_id]
        self._online = None

    def set_status(self, user_id: int, status: Status) -> None:
        self._status[user_id] = status
        self._online = None

    def status(self, user_id: int) -> Status:
        # A newly connected agent is available until they say otherwise.
        return self._status.get(user_id, Status.AVAILABLE)

    def is_online(self, user_id: int) -> bool:
        return self._connections[user_id] > 0 and self.status(user_id) is Status.AVAILABLE

    def online(self) -> frozenset[int]:
        if self._online is None:
            self._online = frozenset(
                u for u in self._connections if self.status(u) is Status.AVAILABLE
            )
        return self._online
