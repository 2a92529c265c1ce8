"""Provider call events into the call log, the customer's history, tasks and screen pops.

For each `CallEvent` (channels/voice/ turns webhooks into them):

1. the number on the customer's side goes through the ingest pipeline as a
   phone contact with provider id "<provider>:<call id>": matching by the
   identity rules (E.164 from any spelling), a new lead for an unknown
   number, and the pipeline's idempotency, so a call is one history entry
   however often its events come. A withheld number is never matched: the
   call is logged in `call` only;
2. one transaction advances the call's state (routing/calls.py), maps the
   PBX's user ids to crmhub users (username or extension), writes the call's
   facts into its history entry, makes a call-back task for a missed inbound
   call ("Rückruf", for the customer's owner) and closes open call-back tasks
   of the customer once a call is answered;
3. after the commit the step is published: the pop (call.ringing) only to the
   agents the call rings at (or, when the PBX names nobody, the online agents
   of the customer's team), call.answered / ended / missed to the same
   agents, so every other desk's pop closes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from channels.base import CallEvent, Channel, Direction, InboundContact
from hub.events.bus import Event, EventBus
from hub.events.kinds import CallKind, call_event, task_created
from hub.events.presence import Presence
from hub.ingest.pipeline import IngestError, Ingestor
from hub.store.db import Database
from hub.store.models import utcnow
from hub.store.tables import call_t, customer_t, interaction_t, task_t, user_t, user_team_t
from routing.calls import CallRecord, CallState, advance

log = logging.getLogger(__name__)

CALLBACK_TITLE = "Rückruf"
_KINDS = {
    CallState.RINGING: CallKind.RINGING,
    CallState.ANSWERED: CallKind.ANSWERED,
    CallState.ENDED: CallKind.ENDED,
    CallState.MISSED: CallKind.MISSED,
}


@dataclass(frozen=True, slots=True)
class CallOutcome:
    state: CallState
    changed: bool
    customer_id: int | None
    interaction_id: int | None


def withheld(number: str) -> bool:
    return sum(ch.isdigit() for ch in number) < 3  # "", "anonymous", "unknown", "+"


class CallService:
    def __init__(
        self,
        db: Database,
        ingestor: Ingestor,
        bus: EventBus,
        presence: Presence,
        *,
        callback_due_minutes: float = 60.0,
        default_team_id: int | None = None,
    ) -> None:
        self.db = db
        self.ingestor = ingestor
        self.bus = bus
        self.presence = presence
        self.callback_due = timedelta(minutes=callback_due_minutes)
        self.default_team_id = default_team_id

    async def handle(self, event: CallEvent) -> CallOutcome:
        inbound = event.direction is Direction.IN
        number = event.from_number if inbound else event.to_number
        other = event.to_number if inbound else event.from_number
        customer_id = interaction_id = None
        if not withheld(number):
            try:
                result = await self.ingestor.ingest(
                    InboundContact(
                        Channel.PHONE,
                        number,
                        recipient=other,
                        subject="Call",
                        provider_id=f"{event.provider}:{event.call_id}"[:500],
                        occurred_at=event.occurred_at,
                        metadata={"call": {"provider": event.provider, "call_id": event.call_id}},
                    )
                )
                customer_id, interaction_id = result.customer_id, result.interaction_id
            except IngestError as exc:  # not a number we can read: logged, never matched
                log.info("call %s: number %r not matched: %s", event.call_id, number, exc)
        events: list[Event] = []
        async with self.db.write() as s:
            conn = await s.connection()
            outcome = await self._advance(conn, event, customer_id, interaction_id, events)
        for e in events:
            self.bus.publish(e)
        return outcome

    async def _advance(
        self,
        conn: AsyncConnection,
        event: CallEvent,
        customer_id: int | None,
        interaction_id: int | None,
        events: list[Event],
    ) -> CallOutcome:
        query = (
            select(call_t)
            .where(call_t.c.provider == event.provider)
            .where(call_t.c.call_id == event.call_id)
        )
        if not self.db.sqlite:
            query = query.with_for_update()  # SQLite's write transaction already serialises
        row = (await conn.execute(query)).first()
        before = _record(row) if row is not None else None
        after = advance(before, event)
        ringing_ids = await self._user_ids(conn, after.ringing)
        answered_id = (
            (await self._user_ids(conn, (after.answered_by,)))[:1] if after.answered_by else []
        )
        values: dict[str, Any] = {
            "state": after.state.value,
            "ringing": list(after.ringing),
            "ringing_user_ids": ringing_ids,
            "answered_by": (after.answered_by or None) and after.answered_by[:100],
            "answered_user_id": answered_id[0] if answered_id else None,
            "cause": after.cause,
            "started_at": after.started_at,
            "answered_at": after.answered_at,
            "ended_at": after.ended_at,
            "updated_at": utcnow(),
        }
        if row is None:
            values.update(
                provider=event.provider,
                call_id=event.call_id,
                direction=event.direction.value,
                from_number=event.from_number[:50],
                to_number=event.to_number[:50],
                customer_id=customer_id,
                interaction_id=interaction_id,
            )
            call_pk = (
                await conn.execute(call_t.insert().values(**values).returning(call_t.c.id))
            ).scalar_one()
        else:
            call_pk = row.id
            customer_id = row.customer_id or customer_id
            interaction_id = row.interaction_id or interaction_id
            values.update(customer_id=customer_id, interaction_id=interaction_id)
            await conn.execute(update(call_t).where(call_t.c.id == call_pk).values(**values))
        team_id = await self._team_of(conn, customer_id)
        if interaction_id is not None:
            await self._describe(conn, interaction_id, event, after)
        changed = before is None or before.state is not after.state
        missed_inbound = after.state is CallState.MISSED and event.direction is Direction.IN
        if changed and missed_inbound and customer_id is not None:
            await self._callback_task(conn, call_pk, customer_id, event, team_id, events)
        if changed and after.state in (CallState.ANSWERED, CallState.ENDED) and customer_id:
            await self._close_callbacks(conn, customer_id)
        if changed:
            audience = set(ringing_ids) | set(answered_id)
            if not audience:
                audience = await self._online_agents(conn, team_id)
            events.append(
                call_event(
                    _KINDS[after.state],
                    provider=event.provider,
                    call_id=event.call_id,
                    from_number=event.from_number,
                    to_number=event.to_number,
                    direction=event.direction.value,
                    customer_id=customer_id,
                    ringing_user_ids=ringing_ids,
                    answered_user_id=answered_id[0] if answered_id else None,
                    answered_by=after.answered_by,
                    cause=after.cause,
                    users=frozenset(audience),
                    team_id=team_id,
                )
            )
        return CallOutcome(after.state, changed, customer_id, interaction_id)

    async def _user_ids(self, conn: AsyncConnection, raw: tuple[str | None, ...]) -> list[int]:
        """PBX user ids → crmhub users, by username or phone extension, in order."""
        names = [r for r in raw if r]
        if not names:
            return []
        rows = (
            await conn.execute(
                select(user_t.c.id, user_t.c.username, user_t.c.phone_extension).where(
                    or_(user_t.c.username.in_(names), user_t.c.phone_extension.in_(names))
                )
            )
        ).all()
        by_key: dict[str, int] = {}
        for uid, username, ext in rows:
            by_key[username] = uid
            if ext:
                by_key.setdefault(ext, uid)
        return list(dict.fromkeys(by_key[n] for n in names if n in by_key))

    async def _team_of(self, conn: AsyncConnection, customer_id: int | None) -> int | None:
        if customer_id is None:
            return self.default_team_id
        team = (
            await conn.execute(select(customer_t.c.team_id).where(customer_t.c.id == customer_id))
        ).scalar()
        return int(team) if team is not None else self.default_team_id

    async def _online_agents(self, conn: AsyncConnection, team_id: int | None) -> set[int]:
        online = self.presence.online()
        if team_id is None or not online:
            return set(online)
        members = (
            await conn.execute(
                select(user_team_t.c.user_id).where(user_team_t.c.team_id == team_id)
            )
        ).scalars()
        return set(members) & set(online)

    async def _describe(
        self, conn: AsyncConnection, interaction_id: int, event: CallEvent, rec: CallRecord
    ) -> None:
        """The call's facts in its history entry (the history shows calls like messages)."""
        meta = (
            await conn.execute(
                select(interaction_t.c.meta).where(interaction_t.c.id == interaction_id)
            )
        ).scalar() or {}
        call = {
            "provider": event.provider,
            "call_id": event.call_id,
            "state": rec.state.value,
            "missed": rec.state is CallState.MISSED,
            "ringing": list(rec.ringing),
            "answered_by": rec.answered_by,
            "cause": rec.cause,
            "wait_seconds": rec.wait_seconds,
            "talk_seconds": rec.talk_seconds,
        }
        text = {
            CallState.RINGING: "Call ringing",
            CallState.ANSWERED: f"Call answered by {rec.answered_by or 'someone'}",
            CallState.ENDED: f"Call, {round(rec.talk_seconds or 0)} s talk"
            + (f" with {rec.answered_by}" if rec.answered_by else ""),
            CallState.MISSED: f"Missed call ({rec.cause or 'not answered'})",
        }[rec.state]
        await conn.execute(
            update(interaction_t)
            .where(interaction_t.c.id == interaction_id)
            .values(meta={**dict(meta), "call": call}, text=text, direction=event.direction.value)
        )

    async def _callback_task(
        self,
        conn: AsyncConnection,
        call_pk: int,
        customer_id: int,
        event: CallEvent,
        team_id: int | None,
        events: list[Event],
    ) -> None:
        owner = (
            await conn.execute(select(customer_t.c.owner_id).where(customer_t.c.id == customer_id))
        ).scalar()
        title = f"{CALLBACK_TITLE}: {event.from_number}"
        task_id = (
            await conn.execute(
                task_t.insert()
                .values(
                    customer_id=customer_id,
                    assignee_id=owner,
                    title=title,
                    due_at=event.occurred_at + self.callback_due,
                    done=False,
                    created_at=utcnow(),
                )
                .returning(task_t.c.id)
            )
        ).scalar_one()
        await conn.execute(
            update(call_t).where(call_t.c.id == call_pk).values(callback_task_id=task_id)
        )
        events.append(
            task_created(
                task_id=task_id,
                customer_id=customer_id,
                title=title,
                assignee_id=owner,
                team_id=team_id,
            )
        )

    async def _close_callbacks(self, conn: AsyncConnection, customer_id: int) -> None:
        open_tasks = (
            select(call_t.c.callback_task_id)
            .where(call_t.c.customer_id == customer_id)
            .where(call_t.c.callback_task_id.is_not(None))
        )
        await conn.execute(
            update(task_t)
            .where(task_t.c.id.in_(open_tasks))
            .where(~task_t.c.done)
            .values(done=True)
        )


def _record(row: Any) -> CallRecord:
    return CallRecord(
        state=CallState(row.state),
        started_at=row.started_at,
        ringing=tuple(row.ringing or ()),
        answered_by=row.answered_by,
        answered_at=row.answered_at,
        ended_at=row.ended_at,
        cause=row.cause,
    )
