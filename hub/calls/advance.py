"""A group of call events advanced in the ingest writer's transaction, set-based.

A few reads for the whole group (the calls' rows, the customers a call's
later events need, team members only when routing did not give them, the
PBX users), the state machine per call (routing/calls.py), then one
statement per kind of write. A group holds at most one event per call
(hub/calls/group.py).
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import Any

from sqlalchemy import bindparam, func, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from channels.base import CallEvent, CallEventKind, CallProvider, Direction
from hub.calls.callbacks import callback_step, update_callbacks
from hub.calls.group import Pending
from hub.calls.pg import (
    pop_cards_pg,
    read_calls,
    write_calls,
    write_calls_and_cards,
)
from hub.calls.users import map_users, phone_keys, resolve_users, team_members
from hub.ingest.context import IngestResult
from hub.records.lookup import asked_number, pop_cards
from hub.runtime import Hub
from hub.store.db import is_postgres
from hub.store.models import ConversationStatus
from hub.store.sqlite_driver import defer_many
from hub.store.tables import conversation_t, customer_t, interaction_t, phone_call_t, user_t
from routing.assignment import Situation, assign
from routing.calls import CallRecord, CallState, advance

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
# Built once (an expanding IN of (provider, call id) pairs): building it per group cost
# its construction and its cache key every time.
_CALLS = select(phone_call_t).where(
    tuple_(phone_call_t.c.provider, phone_call_t.c.call_id).in_(bindparam("keys", expanding=True))
)
# Their results are not needed before the commit: on SQLite they ride along with the
# transaction's next statement or its COMMIT (defer_many), not a round trip each.
_INSERT_CALL = insert(phone_call_t)
_UPDATE_META = (
    update(interaction_t)
    .where(interaction_t.c.id == bindparam("k_id"))
    .values(direction=bindparam("direction"), meta=bindparam("meta"))
)

# Each team's last round-robin pick, per running hub (a restart starts over).
_PICKS: weakref.WeakKeyDictionary[Hub, dict[int | None, int]] = weakref.WeakKeyDictionary()


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


class GroupAdvance:
    """One group's advance (`run`), in the transaction that stores its contacts."""

    def __init__(self, hub: Hub, conn: AsyncConnection, group: list[Pending]) -> None:
        self.hub = hub
        self.conn = conn
        self.group = group
        self.results: dict[int, IngestResult | None] = {
            id(p): (p.items[0].result if p.items else None) for p in group
        }
        self.owners: dict[int, int | None] = {}
        self.pg = is_postgres(conn)  # fewer, combined statements there (hub/calls/pg.py)

    async def run(self) -> None:
        conn, group = self.conn, self.group
        keys = [p.key for p in group]
        region = self.hub.settings.voice.pbx.default_region
        rows: dict[tuple[str, str], Any]
        if self.pg:
            # The PBX users the events name come with the calls' rows (one trip, not two).
            asked = {n for p in group for n in (*p.event.users, p.event.answered_by) if n}
            numbers = phone_keys(asked, region)
            phones = sorted({n for n in numbers.values() if n.startswith("+")})
            rows, user_rows = await read_calls(conn, keys, sorted(asked), phones)
        else:
            rows = {(r.provider, r.call_id): r for r in await conn.execute(_CALLS, {"keys": keys})}
        await self._customers()
        # Team members, read only for the teams that need them: whom Twilio rings
        # (assignment), and below, pops that ring no known agent (the team's online ones).
        twilio = {p.outcome.team_id for p in group if p.event.provider is CallProvider.TWILIO}
        members = await team_members(conn, twilio) if twilio else {}
        for p in group:
            await self._decide(p, rows.get(p.key), self.owners.get(id(p)), members)
        names = {
            name
            for p in group
            if p.outcome.after is not None
            for name in (*p.outcome.after.ringing, p.outcome.after.answered_by)
            if name
        }
        if self.pg and names <= asked:
            users = resolve_users(names, numbers, user_rows)
        else:  # names from the calls' rows or from assignment (a later event, Twilio)
            users = await map_users(conn, names, region)
        unnamed = {
            p.outcome.route_team_id or p.outcome.team_id
            for p in group
            if p.outcome.after is not None
            and not any(r in users for r in p.outcome.after.ringing)
            and (p.outcome.route_team_id or p.outcome.team_id) not in members
        }
        if unnamed:
            members.update(await team_members(conn, unnamed))
        inserts, updates, metas = self._rows(rows, users, members)
        wanted = self._wanted_pops()
        callbacks = [
            p
            for p in group
            if self.results[id(p)] is not None
            and callback_step(p.outcome.event or p.event, p.outcome) is not None
        ]
        asks = [(cid, asked) for _, cid, asked in wanted]
        if self.pg and wanted and not callbacks:
            # One trip for the writes and the cards read after them (no call-back
            # task is written in between, which the cards would have to show).
            cards = await write_calls_and_cards(conn, inserts, updates, metas, asks)
        else:
            await self._write(inserts, updates, metas)
            due = self.hub.settings.voice.callback_due_minutes
            for p in callbacks:
                event = p.outcome.event or p.event
                await update_callbacks(conn, event, p.outcome, self.owners.get(id(p)), due)
            read = pop_cards_pg if self.pg else pop_cards
            cards = await read(conn, asks) if wanted else {}
        for index, (p, cid, _) in enumerate(wanted):
            p.outcome.cards = cards.get((index, cid))
        for p in group:
            for item in p.items:
                # The call's events announce its history entry (they carry its ids) to
                # the agents the call concerns; the ingest writer does not send
                # `interaction.created` to the whole team as well (bench/README.md,
                # "screen pop": ~50 frames per call, which cost more than the pop).
                item.announce = False

    def _wanted_pops(self) -> list[tuple[Pending, int, dict[str, Any]]]:
        """The group's new pops with a known caller, whose cards `run` reads in the
        transaction that stores them (after its writes: the card shows this call too),
        not the stream after the commit: a separate read of its own cost each pop ~8 ms
        at 200 calls/s (bench/README.md, screen pop). The stream renders frames that
        come without."""
        region = self.hub.events.pop_region
        if region is None:
            return []
        wanted: list[tuple[Pending, int, dict[str, Any]]] = []
        for p in self.group:
            out = p.outcome
            after, before = out.after, out.before
            if (
                after is not None
                and after.state is CallState.RINGING
                and (before is None or before.state is not CallState.RINGING)
                and out.customer_id is not None
            ):
                number = (out.event or p.event).from_number
                wanted.append((p, out.customer_id, asked_number(number, region)))
        return wanted

    async def _customers(self) -> None:
        """The customer, team and owner of each call: routing read them for a contact
        stored now; only a call's later events (duplicates of its entry) read them here."""
        unread: set[int] = set()
        for p in self.group:
            out, result = p.outcome, self.results[id(p)]
            if result is None:
                if p.items:
                    out.team_id = p.items[0].lead_team_id
                continue
            out.customer_id = result.customer_id
            out.interaction_id = result.interaction_id
            out.conversation_id = result.conversation_id
            out.created_customer = result.created_customer and not result.duplicate
            decision = p.items[0].decision
            if decision is not None and not result.duplicate:
                out.team_id = decision.customer.team_id
                self.owners[id(p)] = decision.customer.owner_id
            else:
                unread.add(result.customer_id)
        if unread:
            customers = {
                r.id: r
                for r in await self.conn.execute(
                    select(customer_t.c.id, customer_t.c.owner_id, customer_t.c.team_id).where(
                        customer_t.c.id.in_(unread)
                    )
                )
            }
            for p in self.group:
                cust = customers.get(p.outcome.customer_id or 0)
                if p.outcome.customer_id in unread and cust is not None:
                    self.owners[id(p)], p.outcome.team_id = cust.owner_id, cust.team_id
        for p in self.group:
            if p.outcome.team_id is None and p.items:
                p.outcome.team_id = p.items[0].lead_team_id

    def _rows(
        self,
        rows: dict[tuple[str, str], Any],
        users: dict[str, int],
        members: dict[int | None, set[int]],
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        """Each call's audience, and the group's call rows to insert and update and its
        history entries' summaries."""
        online = self.hub.presence.online()
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        metas: list[dict[str, Any]] = []
        for p in self.group:
            out, result = p.outcome, self.results[id(p)]
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
        return inserts, updates, metas

    async def _write(
        self,
        inserts: list[dict[str, Any]],
        updates: list[dict[str, Any]],
        metas: list[dict[str, Any]],
    ) -> None:
        if self.pg:
            await write_calls(self.conn, inserts, updates, metas)
            return
        if inserts:
            await defer_many(self.conn, _INSERT_CALL, inserts)
        if updates:
            await defer_many(self.conn, _UPDATE_CALL, updates)
        if metas:
            await defer_many(self.conn, _UPDATE_META, metas)

    async def _decide(
        self, p: Pending, row: Any, owner: int | None, members: dict[int | None, set[int]]
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
            chosen = await self._assign(owner, out.team_id, members.get(out.team_id, set()))
            names = await self.conn.execute(
                select(user_t.c.username).where(user_t.c.id.in_(chosen))
            )
            ring = tuple(sorted(n[0] for n in names))
            after = dataclasses.replace(after, ringing=ring)
            out.targets = [f"client:{name}" for name in ring]
        out.before, out.after = before, after

    async def _assign(
        self, owner: int | None, team_id: int | None, members: set[int]
    ) -> tuple[int, ...]:
        voice = self.hub.settings.voice
        counts: dict[int, int] = {}
        if voice.max_open_conversations > 0 and members:
            rows = await self.conn.execute(
                select(conversation_t.c.assignee_id, func.count())
                .where(conversation_t.c.status == ConversationStatus.OPEN.value)
                .where(conversation_t.c.assignee_id.in_(members))
                .group_by(conversation_t.c.assignee_id)
            )
            counts = {r[0]: int(r[1]) for r in rows}
        last = _PICKS.setdefault(self.hub, {})
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
