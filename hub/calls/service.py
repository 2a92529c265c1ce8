"""One provider call event in, through the ingest pipeline: state, log entry, task, events.

The caller's number goes through the pipeline as a phone contact whose
provider id is the call key, so the first event of a call creates its one
history entry (and a lead for an unknown caller) and every later event is
that entry's duplicate. The call's state is advanced in the same
transaction (`extra` of `ingest_unit`), so a provider gets its answer only
after both are committed; events are published after the commit.

Call events are stored in groups, one transaction for many (hub/calls/group.py),
advanced set-based (advance.py), with their call-back tasks (callbacks.py), and
published as call events (publish.py).
"""

from __future__ import annotations

import dataclasses
import logging
import weakref

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from channels.base import (
    CallEvent,
    CallEventKind,
    CallProvider,
    Channel,
    Direction,
    InboundContact,
)
from hub.calls.advance import GroupAdvance
from hub.calls.group import Outcome, Pending, batcher_of
from hub.calls.publish import publish_step
from hub.ingest.context import Prepared
from hub.ingest.pipeline import IngestError
from hub.records.teams import ensure_team
from hub.runtime import Hub
from hub.store.tables import phone_call_t
from routing.calls import is_anonymous

log = logging.getLogger(__name__)

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
        """Advance every call of a group in the transaction that stores its contacts."""
        await GroupAdvance(self.hub, conn, group).run()

    def _publish(self, event: CallEvent, out: Outcome) -> None:
        publish_step(self.hub.bus, event, out)
