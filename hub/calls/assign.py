"""Who gets a new email or SMS conversation: routing/assignment.py's steps over live data.

The owner of the customer if online and below their maximum of open
conversations, else the next online agent of the customer's team in round
robin (skipping agents at their maximum). "Online" is an agent with a live
event-stream connection and status available (hub/events/presence.py; each
node knows its own connections). Nobody online: the owner, as before
assignment existed (None for a customer without one), so the conversation
waits in its team's queue or on its owner's desk.

The pipeline (hub/ingest/route.py) asks `pick` while routing a batch; reads
happen once per batch in `prefetch` and only when someone is online: the
team's members (cached for a few seconds: agents join teams rarely) and,
with a maximum set, their open conversations. Counts grow as the batch
assigns, so one batch does not pile onto one agent.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from channels.base import Channel
from hub.events.presence import Presence
from hub.store.models import ConversationStatus
from hub.store.tables import conversation_t, user_t, user_team_t
from routing.assignment import Situation, Step, assign

MEMBERS_SECONDS = 5.0
# New conversations of these channels are assigned; a call's conversation keeps the
# owner (whom a call rings is decided by the call's own assignment, hub/calls/service.py).
CHANNELS = frozenset({Channel.EMAIL, Channel.SMS})


class ConversationAssigner:
    def __init__(self, presence: Presence, steps: Iterable[Step], max_open: int) -> None:
        self.presence = presence
        self.channels = CHANNELS
        self.steps = tuple(s for s in steps if s != "named")  # nobody names a mail's agents
        self.max_open = max_open
        self._members: dict[int, tuple[int, ...]] = {}
        self._members_at = 0.0
        self._online: frozenset[int] = frozenset()
        self._counts: Counter[int] = Counter()
        self._last: dict[int | None, int] = {}  # each team's previous round-robin pick

    async def prefetch(self, conn: AsyncConnection, team_ids: Iterable[int | None]) -> None:
        self._online = self.presence.online()
        self._counts = Counter()
        if not self._online:
            return
        now = time.monotonic()
        if now - self._members_at > MEMBERS_SECONDS:
            self._members, self._members_at = {}, now
        wanted = {t for t in team_ids if t is not None and t not in self._members}
        if wanted:
            rows = await conn.execute(
                select(user_team_t.c.team_id, user_team_t.c.user_id)
                .join(user_t, user_t.c.id == user_team_t.c.user_id)
                .where(user_team_t.c.team_id.in_(wanted), user_t.c.active.is_(True))
                .order_by(user_team_t.c.team_id, user_team_t.c.user_id)
            )
            found: dict[int, list[int]] = {t: [] for t in wanted}
            for team_id, user_id in rows:
                found[team_id].append(user_id)
            self._members.update({t: tuple(users) for t, users in found.items()})
        if self.max_open > 0:
            rows = await conn.execute(
                select(conversation_t.c.assignee_id, func.count())
                .where(conversation_t.c.status == ConversationStatus.OPEN.value)
                .where(conversation_t.c.assignee_id.in_(sorted(self._online)))
                .group_by(conversation_t.c.assignee_id)
            )
            self._counts = Counter({r[0]: int(r[1]) for r in rows})

    def pick(self, channel: Channel, owner: int | None, team_id: int | None) -> int | None:
        """The assignee of a new conversation (after `prefetch` for this batch)."""
        if channel not in CHANNELS or not self._online:
            return owner
        situation = Situation(
            owner=owner,
            team=self._members.get(team_id, ()) if team_id is not None else (),
            online=self._online,
            open_counts=self._counts,
            max_open=self.max_open,
            last_picked=self._last.get(team_id),
        )
        decided = assign(situation, self.steps)
        if not decided.users:
            return owner
        chosen = decided.users[0]
        if decided.step == "round_robin":
            self._last[team_id] = chosen
        self._counts[chosen] += 1
        return chosen
