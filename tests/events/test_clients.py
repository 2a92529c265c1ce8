"""The index of connected clients offers each frame to exactly those who may see it."""

from __future__ import annotations

from hub.events.clients import Client, Clients, Frame
from hub.records.auth import Principal
from hub.store.models import Role


def _client(user_id: int, role: Role, teams: set[int]) -> Client:
    return Client(Principal(user_id, f"u{user_id}", role, frozenset(teams)), 10)


def _got(client: Client) -> list[str]:
    kinds = []
    while not client.queue.empty():
        kinds.append(client.queue.get_nowait().kind)
    return kinds


def test_pops_go_to_their_users_team_events_to_the_team_and_admins() -> None:
    clients = Clients()
    admin = _client(1, Role.ADMIN, set())
    anna = _client(2, Role.AGENT, {10})
    anna_phone = _client(2, Role.AGENT, {10})  # a second connection of the same agent
    ben = _client(3, Role.AGENT, {10, 20})
    carl = _client(4, Role.AGENT, {20})
    gone = _client(5, Role.AGENT, {10})
    for c in (admin, anna, anna_phone, ben, carl, gone):
        clients.add(c)
    clients.discard(gone)
    clients.discard(gone)  # twice: harmless
    clients.deliver(Frame(1, "call.ringing", {}, 10, frozenset({2, 4, 99})))
    clients.deliver(Frame(2, "interaction.created", {}, 10, None))
    clients.deliver(Frame(3, "task.created", {}, None, None))  # no team: admins only
    clients.deliver(Frame(None, "bus.overflow", {}, None, None))
    assert len(clients) == 5 and gone not in clients
    assert _got(admin) == ["interaction.created", "task.created", "bus.overflow"]
    assert _got(anna) == _got(anna_phone) == ["call.ringing", "interaction.created", "bus.overflow"]
    assert _got(ben) == ["interaction.created", "bus.overflow"]
    assert _got(carl) == ["call.ringing", "bus.overflow"]
    assert _got(gone) == []
