"""routing.assignment: named agents, the online owner, round robin with a maximum."""

from __future__ import annotations

from routing.assignment import Assignment, Situation, assign


def test_named_agents_win() -> None:
    s = Situation(named=(7, 3, 7), owner=1, team=(1, 2), online=frozenset({1, 2}))
    assert assign(s) == Assignment((7, 3), "named")


def test_owner_when_online_and_not_full() -> None:
    s = Situation(owner=1, team=(1, 2), online=frozenset({1, 2}))
    assert assign(s) == Assignment((1,), "owner")
    full = Situation(owner=1, team=(1, 2), online=frozenset({1, 2}), open_counts={1: 3}, max_open=3)
    assert assign(full) == Assignment((2,), "round_robin")


def test_round_robin_skips_offline_and_full_agents_and_wraps() -> None:
    base = dict(team=(1, 2, 3, 4), online=frozenset({1, 2, 4}), open_counts={2: 5}, max_open=5)
    assert assign(Situation(**base)) == Assignment((1,), "round_robin")  # type: ignore[arg-type]
    after_1 = Situation(**base, last_picked=1)  # type: ignore[arg-type]
    assert assign(after_1) == Assignment((4,), "round_robin")
    after_4 = Situation(**base, last_picked=4)  # type: ignore[arg-type]
    assert assign(after_4) == Assignment((1,), "round_robin")


def test_configured_order_and_nobody() -> None:
    s = Situation(owner=1, team=(1, 2), online=frozenset({1, 2}), last_picked=1)
    assert assign(s, ["round_robin", "owner"]) == Assignment((2,), "round_robin")
    assert assign(Situation(owner=1, team=(1,))) == Assignment((), None)
    assert assign(Situation(named=(5,)), ["owner"]) == Assignment((), None)
