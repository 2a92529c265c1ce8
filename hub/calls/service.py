"""One provider call event in, through the ingest pipeline: state, log entry, task, events.

The caller's number goes through the pipeline as a phone contact whose
provider id is the call key, so the first event of a call creates its one
history entry (and a lead for an unknown caller) and every later event is
that entry's duplicate. The call's state is advanced in the same
transaction (`extra` of `ingest_unit`), so a provider gets its answer only
after both are committed; events are published after the commit.

Call events are stored in groups, one transaction for many (hub/calls/group.py).
"""

from __future__ import annotations

import dataclasses
import logging
import weakref
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from channels.base import (
    CallEvent,
    CallEventKind,
    CallProvider,
    Channel,
    Direction,
    InboundContact,
)
from hub.calls.group import Outcome, Pending, batcher_of
from hub.calls.users import map_users, team_members
from hub.events.kinds import EventKind, call_event, task_created
from hub.ingest.context import Prepared
from hub.ingest.pipeline import IngestError
from hub.records.teams import ensure_team
from hub.runtime import Hub
from hub.store.models import ConversationStatus, utcnow
from hub.store.tables import conversation_t, customer_t, interaction_t, phone_call_t, task_t, user_t
from routing.assignment import Situation, assign
from routing.calls import CallRecord, CallState, advance, is_anonymous

log = logging.getLogger(__name__)

CALLBACK_TITLE = "Rückruf"


def _record(row: Any) -> CallRecord:
    return CallRecord(
        CallState(row.state),
        started_at=row.started_at,
        ringing=tuple(row.ringing or ()),
        answered_by=row.answered_by,
        answered_at=row.answered_at,
        ended_at=row.ended_at,
        cause=row.cause,
    )


def _summary(event: CallEvent, record: CallRecord, users: dict[str, int]) -> dict[str, Any]:
    return {
        "call": {
            "provider": event.provider.value,
            "call_id": event.call_id,
            "state": record.state.value,
            "from": event.from_number,
            "to": event.to_number,
            "ringing": list(record.ringing),
            "ringing_user_ids": [users[r] for r in record.ringing if r in users],
            "answered_by": record.answered_by,
            "answered_by_user_id": users.get(record.answered_by or ""),
            "wait_seconds": record.wait_seconds,
            "talk_seconds": record.talk_seconds,
            "cause": record.cause,
            "missed": record.state is CallState.MISSED,
        }
    }


_UPDATE_CALL = (
    update(phone_call_t)
    .where(phone_call_t.c.provider == bindparam("k_provider"))
    .where(phone_call_t.c.call_id == bindparam("k_call_id"))
    .values(
        state=bindparam("state"),
        ringing=bindparam("ringing"),
        answered_by=bindparam("answered_by"),
        answered_at=bindparam("answered_at"),
        ended_at=bindparam("ended_at"),
        cause=bindparam("cause"),
    )
)
_UPDATE_META = (
    update(interaction_t)
    .where(interaction_t.c.id == bindparam("k_id"))
    .values(direction=bindparam("direction"), meta=bindparam("meta"))
)

# Each team's last round-robin pick, per running hub (a restart starts over).
_PICKS: weakref.WeakKeyDictionary[Hub, dict[int | None, int]] = weakref.WeakKeyDictionary()


def _last_picked(hub: Hub) -> dict[int | None, int]:
    return _PICKS.setdefault(hub, {})


# Team name -> id of the queues' teams, per running hub.
_QUEUE_TEAMS: weakref.WeakKeyDictionary[Hub, dict[str, int]] = weakref.WeakKeyDictionary()


class CallLog:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def handle(self, event: CallEvent) -> str:
        """Store the event (after the commit) and publish; the reply is the dial targets."""
        if event.kind is not CallEventKind.NEW_CALL or event.provider is CallProvider.TWILIO:
            # A PBX's or sipgate's newCall is a call's first event (or its duplicate,
            # with the same numbers); anything else may name fewer or other numbers.
            event = await self._as_first_seen(event)
        inbound = event.direction is Direction.IN
        number = event.from_number if inbound else event.to_number
        ours = event.to_number if inbound else event.from_number
        items: list[Prepared] = []
        if not is_anonymous(number):
            contact = InboundContact(
                channel=Channel.PHONE,
                sender=number,
                recipient=ours,
                provider_id=f"call:{event.provider.value}:{event.call_id}",
                occurred_at=event.occurred_at,
                text=f"{'Incoming' if inbound else 'Outgoing'} call",
            )
            try:
                items = [self.hub.ingestor.prepare(contact)]
            except IngestError:
                items = []  # not a number we can match: logged on the call only
        route_team = await self._queue_team(event.queue)
        if route_team is not None:
            for item in items:
                item.lead_team_id = route_team  # an unknown caller is the queue team's lead
        return await batcher_of(self.hub, CallLog).submit(event, items, route_team)

    async def _queue_team(self, queue: str) -> int | None:
        """The team of a PBX queue (voice.pbx.queues, names in any case); None: not listed."""
        if not queue:
            return None
        wanted = queue.casefold()
        name = next(
            (t for q, t in self.hub.settings.voice.pbx.queues.items() if q.casefold() == wanted),
            None,
        )
        if name is None:
            return None
        known = _QUEUE_TEAMS.setdefault(self.hub, {})
        if name not in known:
            known[name] = await ensure_team(self.hub.db, name)  # named in config: it exists
        return known[name]

    async def _as_first_seen(self, event: CallEvent) -> CallEvent:
        """Numbers and direction as the call's first event gave them: a click-to-dial
        call's later status callbacks name the agent's client as "To", not the customer."""
        async with self.hub.db.read() as s:
            conn = await s.connection()
            row = (
                await conn.execute(
                    select(
                        phone_call_t.c.from_number,
                        phone_call_t.c.to_number,
                        phone_call_t.c.direction,
                    )
                    .where(phone_call_t.c.provider == event.provider.value)
                    .where(phone_call_t.c.call_id == event.call_id)
                )
            ).first()
        if row is None:
            return event
        return dataclasses.replace(
            event,
            from_number=row.from_number,
            to_number=row.to_number,
            direction=Direction(row.direction),
        )

    async def _advance_group(self, conn: AsyncConnection, group: list[Pending]) -> None:
        """Advance every call of a group: a few set-based reads, the state machine per
        call, then one statement per kind of write (a group is one event per call)."""
        keys = [p.key for p in group]
        rows = {
            (r.provider, r.call_id): r
            for r in await conn.execute(
                select(phone_call_t).where(
                    tuple_(phone_call_t.c.provider, phone_call_t.c.call_id).in_(keys)
                )
            )
        }
        results = {id(p): (p.items[0].result if p.items else None) for p in group}
        # The customer's team and owner: routing read them for a contact stored now;
        # only a call's later events (duplicates of its entry) need them read here.
        owners: dict[int, int | None] = {}
        unread: set[int] = set()
        for p in group:
            out, result = p.outcome, results[id(p)]
            if result is None:
                if p.items:
                    out.team_id = p.items[0].lead_team_id
                continue
            out.customer_id = result.customer_id
            decision = p.items[0].decision
            if decision is not None and not result.duplicate:
                out.team_id = decision.customer.team_id
                owners[id(p)] = decision.customer.owner_id
            else:
                unread.add(result.customer_id)
        if unread:
            customers = {
                r.id: r
                for r in await conn.execute(
                    select(customer_t.c.id, customer_t.c.owner_id, customer_t.c.team_id).where(
                        customer_t.c.id.in_(unread)
                    )
                )
            }
            for p in group:
                cust = customers.get(p.outcome.customer_id or 0)
                if p.outcome.customer_id in unread and cust is not None:
                    owners[id(p)], p.outcome.team_id = cust.owner_id, cust.team_id
        for p in group:
            if p.outcome.team_id is None and p.items:
                p.outcome.team_id = p.items[0].lead_team_id
        # Team members, read only for the teams that need them: whom Twilio rings
        # (assignment), and below, pops that ring no known agent (the team's online ones).
        twilio = {p.outcome.team_id for p in group if p.event.provider is CallProvider.TWILIO}
        members = await team_members(conn, twilio) if twilio else {}
        for p in group:
            await self._decide(conn, p, rows.get(p.key), owners.get(id(p)), members)
        users = await map_users(
            conn,
            (
                name
                for p in group
                if p.outcome.after is not None
                for name in (*p.outcome.after.ringing, p.outcome.after.answered_by or "")
            ),
            self.hub.settings.voice.pbx.default_region,
        )
        unnamed = {
            p.outcome.route_team_id or p.outcome.team_id
            for p in group
            if p.outcome.after is not None
            and not any(r in users for r in p.outcome.after.ringing)
            and (p.outcome.route_team_id or p.outcome.team_id) not in members
        }
        if unnamed:
            members.update(await team_members(conn, unnamed))
        online = self.hub.presence.online()
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        metas: list[dict[str, Any]] = []
        for p in group:
            out, result = p.outcome, results[id(p)]
            after, before, event = out.after, out.before, out.event
            assert after is not None and event is not None
            out.ringing_ids = list(dict.fromkeys(users[r] for r in after.ringing if r in users))
            out.answered_id = users.get(after.answered_by or "")
            # The pop goes to the agents it rings at; when the PBX names nobody, to
            # the online agents of the team it routes to (its queue's, else the customer's).
            routed_to = out.route_team_id or out.team_id
            out.audience = (
                frozenset(out.ringing_ids) or frozenset(members.get(routed_to, set())) & online
            )
            values = {
                "state": after.state.value,
                "ringing": list(after.ringing),
                "answered_by": after.answered_by,
                "answered_at": after.answered_at,
                "ended_at": after.ended_at,
                "cause": after.cause,
            }
            if p.key not in rows:
                inserts.append(
                    {
                        "provider": event.provider.value,
                        "call_id": event.call_id,
                        "direction": event.direction.value,
                        "from_number": event.from_number[:100],
                        "to_number": event.to_number[:100],
                        "started_at": after.started_at,
                        "customer_id": out.customer_id,
                        "interaction_id": result.interaction_id if result else None,
                        "route_team_id": out.route_team_id,
                        **values,
                    }
                )
            elif after != before:
                updates.append({"k_provider": p.key[0], "k_call_id": p.key[1], **values})
            if result is not None:
                metas.append(
                    {
                        "k_id": result.interaction_id,
                        "direction": event.direction.value,
                        "meta": _summary(event, after, users),
                    }
                )
        if inserts:
            await conn.execute(insert(phone_call_t), inserts)
        if updates:
            await conn.execute(_UPDATE_CALL, updates)
        if metas:
            await conn.execute(_UPDATE_META, metas)
        for p in group:
            if results[id(p)] is not None:
                await self._tasks(conn, p.outcome.event or p.event, p.outcome, owners.get(id(p)))

    async def _decide(
        self,
        conn: AsyncConnection,
        p: Pending,
        row: Any,
        owner: int | None,
        members: dict[int | None, set[int]],
    ) -> None:
        """The call's next state (and, for a new Twilio call, whom it rings)."""
        out, event = p.outcome, p.event
        if row is not None:
            # As the first event gave them (another node may have stored it meanwhile).
            event = dataclasses.replace(
                event,
                from_number=row.from_number,
                to_number=row.to_number,
                direction=Direction(row.direction),
            )
        out.event = event
        out.route_team_id = p.route_team_id
        if row is not None and row.route_team_id is not None:
            out.route_team_id = row.route_team_id  # the queue of the call's first event
        before = _record(row) if row is not None else None
        after = advance(before, event)
        if (
            event.provider is CallProvider.TWILIO
            and event.kind is CallEventKind.NEW_CALL
            and before is None
            and not after.ringing
        ):
            # We decide whom Twilio rings: assignment, then <Dial><Client> each.
            chosen = await self._assign(conn, owner, out.team_id, members.get(out.team_id, set()))
            names = await conn.execute(select(user_t.c.username).where(user_t.c.id.in_(chosen)))
            ring = tuple(sorted(n[0] for n in names))
            after = dataclasses.replace(after, ringing=ring)
            out.targets = [f"client:{name}" for name in ring]
        out.before, out.after = before, after

    async def _assign(
        self, conn: AsyncConnection, owner: int | None, team_id: int | None, members: set[int]
    ) -> tuple[int, ...]:
        voice = self.hub.settings.voice
        counts: dict[int, int] = {}
        if voice.max_open_conversations > 0 and members:
            rows = await conn.execute(
                select(conversation_t.c.assignee_id, func.count())
                .where(conversation_t.c.status == ConversationStatus.OPEN.value)
                .where(conversation_t.c.assignee_id.in_(members))
                .group_by(conversation_t.c.assignee_id)
            )
            counts = {r[0]: int(r[1]) for r in rows}
        last = _last_picked(self.hub)
        situation = Situation(
            owner=owner,
            team=tuple(sorted(members)),
            online=self.hub.presence.online(),
            open_counts=counts,
            max_open=voice.max_open_conversations,
            last_picked=last.get(team_id),
        )
        decided = assign(situation, voice.assignment)
        if decided.step == "round_robin":
            last[team_id] = decided.users[0]
        return decided.users

    async def _tasks(
        self, conn: AsyncConnection, event: CallEvent, out: Outcome, owner: int | None
    ) -> None:
        before, after = out.before, out.after
        assert after is not None and out.customer_id is not None
        became = before is None or before.state is not after.state
        if not became:
            if before is not None and before.answered_by is None and after.answered_by:
                # An answer that trailed the hangup: someone did speak to the caller.
                await self._close_callbacks(conn, out.customer_id)
            return
        if after.state is CallState.MISSED and event.direction is Direction.IN:
            due = utcnow() + timedelta(minutes=self.hub.settings.voice.callback_due_minutes)
            # No owner: unassigned, on the customer (whose team sees it).
            res = await conn.execute(
                insert(task_t).values(
                    customer_id=out.customer_id,
                    assignee_id=owner,
                    title=CALLBACK_TITLE,
                    due_at=due,
                    done=False,
                    created_at=utcnow(),
                )
            )
            out.task_id = res.inserted_primary_key[0] if res.inserted_primary_key else None
            out.task_assignee = owner
        elif after.state is CallState.ANSWERED or (
            before is None and event.direction is Direction.OUT
        ):
            # Spoken to (or called back): the open call-back is done.
            await self._close_callbacks(conn, out.customer_id)

    async def _close_callbacks(self, conn: AsyncConnection, customer_id: int) -> None:
        await conn.execute(
            update(task_t)
            .where(task_t.c.customer_id == customer_id)
            .where(task_t.c.title == CALLBACK_TITLE)
            .where(task_t.c.done.is_(False))
            .values(done=True)
        )

    def _publish(self, event: CallEvent, out: Outcome) -> None:
        after, before = out.after, out.before
        if after is None:
            return
        kinds: list[EventKind] = []
        if before is None or after.state is not before.state:
            kinds.append(
                {
                    CallState.ANSWERED: EventKind.CALL_ANSWERED,
                    CallState.ENDED: EventKind.CALL_ENDED,
                    CallState.MISSED: EventKind.CALL_MISSED,
                    CallState.RINGING: EventKind.CALL_RINGING,
                }[after.state]
            )
        for kind in kinds:
            self.hub.bus.publish(
                call_event(
                    kind,
                    call_id=event.call_id,
                    provider=event.provider.value,
                    from_number=event.from_number,
                    to_number=event.to_number,
                    direction=event.direction.value,
                    customer_id=out.customer_id,
                    ringing_user_ids=out.ringing_ids,
                    audience=out.audience,
                    team_id=out.team_id,
                    answered_by_user_id=out.answered_id,
                    answered_by=after.answered_by,
                    cause=after.cause,
                )
            )
        if out.task_id is not None and out.customer_id is not None:
            self.hub.bus.publish(
                task_created(
                    task_id=out.task_id,
                    customer_id=out.customer_id,
                    assignee_id=out.task_assignee,
                    title=CALLBACK_TITLE,
                    team_id=out.team_id,
                )
            )
