"""What the stream sends and to whom: frames, each connection's queue, and the index of
connections by user and team (hub/events/stream.py delivers through it)."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from hub.events.bus import OVERFLOW_KIND
from hub.records.auth import Principal


@dataclass(frozen=True)
class Frame:
    id: int | None
    kind: str
    data: dict[str, Any]
    team_id: int | None
    users: frozenset[int] | None
    # Per-recipient-class renderings shared by every client it goes to (the pop's
    # caller card: hub/web/api/events.py); not part of the frame's value.
    cache: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    def json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "data": self.data}

    @functools.cached_property
    def data_text(self) -> str:
        """`data` as JSON, encoded once for the clients' text, the other nodes' NOTIFY
        and the stored row (encoding was ~10 % of the event stream's CPU per use)."""
        return json.dumps(self.data)

    @functools.cached_property
    def text(self) -> str:
        """Encoded once, however many clients it goes to (a team event reaches dozens);
        the same JSON as `json.dumps(self.json())`."""
        return f'{{"id": {_int(self.id)}, "kind": {_string(self.kind)}, "data": {self.data_text}}}'

    def node_text(self) -> str:
        """The frame as another node receives it (events.pg_fanout): `json()` with the
        team and the recipients."""
        users = "null" if self.users is None else json.dumps(sorted(self.users))
        return (
            f'{{"id": {_int(self.id)}, "kind": {_string(self.kind)}, "data": {self.data_text},'
            f' "team_id": {_int(self.team_id)}, "users": {users}}}'
        )


def _int(value: int | None) -> str:
    # Not json.dumps for an int: a call of it costs more than the whole f-string
    # (~1.5 us). Anything else a publisher got wrong is encoded as before, so it
    # cannot stop the stream.
    if value is None:
        return "null"
    return str(value) if type(value) is int else json.dumps(value)


@functools.lru_cache(maxsize=256)
def _string(value: str) -> str:
    """A string as JSON; for the few event kinds, encoded once each."""
    return json.dumps(value)


def may_see(principal: Principal, frame: Frame) -> bool:
    if frame.kind == OVERFLOW_KIND:
        return True
    if frame.users is not None:
        return principal.user_id in frame.users
    return principal.is_admin or (frame.team_id is not None and frame.team_id in principal.team_ids)


class Client:
    """One connection's queue; bounded, oldest dropped first, like the bus."""

    def __init__(self, principal: Principal, size: int) -> None:
        self.principal = principal
        self.queue: asyncio.Queue[Frame] = asyncio.Queue(size)
        self.dropped = 0

    def offer(self, frame: Frame) -> None:
        if not may_see(self.principal, frame):
            return
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(frame)


class Clients:
    """The connected clients, indexed by who may see what: a pop (`Frame.users`) is
    offered to its few users' clients, a team event to the team's and the admins',
    not to every client of the node (200 agents, several frames per call)."""

    def __init__(self) -> None:
        self._all: set[Client] = set()
        self._by_user: dict[int, set[Client]] = {}
        self._by_team: dict[int, set[Client]] = {}  # not admins: they get every team's
        self._admins: set[Client] = set()

    def add(self, client: Client) -> None:
        p = client.principal
        self._all.add(client)
        self._by_user.setdefault(p.user_id, set()).add(client)
        if p.is_admin:
            self._admins.add(client)
        else:
            for team in p.team_ids:
                self._by_team.setdefault(team, set()).add(client)

    def discard(self, client: Client) -> None:
        if client not in self._all:
            return
        p = client.principal
        self._all.discard(client)
        self._admins.discard(client)
        _unindex(self._by_user, p.user_id, client)
        for team in p.team_ids:
            _unindex(self._by_team, team, client)

    def __iter__(self) -> Iterator[Client]:
        return iter(self._all)

    def __len__(self) -> int:
        return len(self._all)

    def __contains__(self, client: object) -> bool:
        return client in self._all

    def deliver(self, frame: Frame) -> None:
        if frame.kind == OVERFLOW_KIND:
            targets: Iterable[Client] = tuple(self._all)
        elif frame.users is not None:
            targets = [c for u in frame.users for c in self._by_user.get(u, ())]
        else:
            team = self._by_team.get(frame.team_id, ()) if frame.team_id is not None else ()
            targets = [*self._admins, *team]
        for client in targets:
            client.offer(frame)  # checks may_see again: the index is only a shortcut


def _unindex(index: dict[int, set[Client]], key: int, client: Client) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(client)
        if not members:
            del index[key]
