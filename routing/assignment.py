"""Who gets a call (or a new conversation): ordered, configurable steps. Pure.

Steps, in the configured order, the first that yields anyone wins:
- "named": the agents the PBX event names (it already decided whom it rings);
- "owner": the customer's owner, if online and not at their maximum;
- "round_robin": the next online agent of the team (the customer's, else the
  team of the number called) after the one it picked last, skipping agents
  at their maximum of open conversations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

Step = Literal["named", "owner", "round_robin"]
DEFAULT_STEPS: tuple[Step, ...] = ("named", "owner", "round_robin")


@dataclass(frozen=True, slots=True)
class Situation:
    named: tuple[int, ...] = ()
    owner: int | None = None
    team: tuple[int, ...] = ()  # the team's agents, in a stable order (by id)
    online: frozenset[int] = frozenset()
    open_counts: Mapping[int, int] = field(default_factory=dict)
    max_open: int = 0  # 0: no maximum
    last_picked: int | None = None  # the team's previous round-robin pick


@dataclass(frozen=True, slots=True)
class Assignment:
    users: tuple[int, ...]
    step: Step | None  # which step decided; None: nobody available


def _has_room(s: Situation, user: int) -> bool:
    return s.max_open <= 0 or s.open_counts.get(user, 0) < s.max_open


def _round_robin(s: Situation) -> tuple[int, ...]:
    ready = [u for u in s.team if u in s.online and _has_room(s, u)]
    if not ready:
        return ()
    if s.last_picked is not None:
        after = [u for u in ready if u > s.last_picked]
        if after:
            return (after[0],)
    return (ready[0],)


def assign(s: Situation, steps: Sequence[Step] = DEFAULT_STEPS) -> Assignment:
    for step in steps:
        if step == "named" and s.named:
            return Assignment(tuple(dict.fromkeys(s.named)), "named")
        if (
            step == "owner"
            and s.owner is not None
            and s.owner in s.online
            and _has_room(s, s.owner)
        ):
            return Assignment((s.owner,), "owner")
        if step == "round_robin":
            picked = _round_robin(s)
            if picked:
                return Assignment(picked, "round_robin")
    return Assignment((), None)
