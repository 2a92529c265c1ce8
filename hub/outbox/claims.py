"""Which outbox rows a dispatcher round may take: due rows, rows whose lease expired
(their node died), never a paused or cancelled campaign's; and the room each
channel's hourly window leaves. The claiming itself is the dispatcher's."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Integer, Select, and_, bindparam, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.outbox.queue import OutboxStatus
from hub.store.columns import UTCDateTime
from hub.store.models import ConsentState
from hub.store.tables import campaign_t, consent_t, customer_t, interaction_t, outbox_t


@dataclass(frozen=True, slots=True)
class Claim:
    row: Any  # a Core row of the outbox table, as it was before the claim
    attempt: int  # the attempt number this claim holds (the fence)
    uncertain: bool = False  # found "sending" after its lease expired (a node died)

    def fence(self) -> ColumnElement[bool]:
        """Matches the row only while this claim holds it (not re-claimed after a lease)."""
        return and_(
            outbox_t.c.id == self.row.id,
            outbox_t.c.status == OutboxStatus.SENDING.value,
            outbox_t.c.attempts == self.attempt,
        )


def _opted_out() -> ColumnElement[bool]:
    """Whether the newest consent row of some purpose on the row's channel is an opt-out
    (as hub.outbox.queue.opted_out, read with the row instead of by another statement)."""
    given, newer = consent_t.alias("given"), consent_t.alias("newer")
    return exists().where(
        given.c.customer_id == outbox_t.c.customer_id,
        given.c.channel == outbox_t.c.channel,
        given.c.state == ConsentState.OPTED_OUT.value,
        ~exists().where(
            newer.c.customer_id == given.c.customer_id,
            newer.c.channel == given.c.channel,
            newer.c.purpose == given.c.purpose,
            or_(
                newer.c.recorded_at > given.c.recorded_at,
                and_(newer.c.recorded_at == given.c.recorded_at, newer.c.id > given.c.id),
            ),
        ),
    )


@functools.lru_cache(maxsize=256)
def due_query(
    channel: str, expired: bool, full_mailboxes: frozenset[str] = frozenset(), locked: bool = False
) -> Select[Any]:
    """The rows of `channel` a round may claim, in the order to take them: with
    `expired`, rows whose lease ran out before `b_expired` (their node died); else
    queued rows due by `b_now`, oldest due first; at most `b_limit`. Email rows of
    `full_mailboxes` (hourly window used up) are left out; `locked` adds FOR UPDATE
    SKIP LOCKED (PostgreSQL).

    Two queries, not one with OR: each walks the (status, channel, next_attempt_at,
    id) index in order and stops at the limit; the OR made SQLite scan and sort
    every queued row for each claim. Built once per shape, with the moments and the
    limit as binds: a statement SQLAlchemy has seen is not walked again for its
    cache key, which cost more than the query itself every dispatcher cycle.
    """
    # A paused or cancelled campaign's messages wait (or never go).
    held = or_(
        outbox_t.c.campaign_id.is_(None),
        outbox_t.c.campaign_id.not_in(
            select(campaign_t.c.id).where(campaign_t.c.status.in_(("paused", "cancelled")))
        ),
    )
    # Read with the row, for recording its outcome without another statement: the
    # customer's team (whom the delivery event goes to) and the interaction's status.
    team = select(customer_t.c.team_id).where(customer_t.c.id == outbox_t.c.customer_id)
    shown = select(interaction_t.c.delivery_status).where(
        interaction_t.c.id == outbox_t.c.interaction_id
    )
    query = (
        select(
            outbox_t,
            team.scalar_subquery().label("team_id"),
            shown.scalar_subquery().label("delivery_status"),
            _opted_out().label("opted_out"),
        )
        .where(outbox_t.c.channel == channel)
        .where(held)
    )
    if expired:
        query = (
            query.where(outbox_t.c.status == OutboxStatus.SENDING.value)
            .where(outbox_t.c.claimed_at < bindparam("b_expired", type_=UTCDateTime))
            .order_by(outbox_t.c.claimed_at, outbox_t.c.id)
        )
    else:
        query = (
            query.where(outbox_t.c.status == OutboxStatus.QUEUED.value)
            .where(outbox_t.c.next_attempt_at <= bindparam("b_now", type_=UTCDateTime))
            .order_by(outbox_t.c.next_attempt_at, outbox_t.c.id)
        )
    if full_mailboxes:
        query = query.where(
            or_(outbox_t.c.mailbox.is_(None), outbox_t.c.mailbox.not_in(sorted(full_mailboxes)))
        )
    query = query.limit(bindparam("b_limit", type_=Integer))
    return query.with_for_update(skip_locked=True) if locked else query


@dataclass(frozen=True, slots=True)
class Window:
    """What the hourly windows leave for one claim."""

    channels: list[str]  # channels that may still send
    limit: int  # the claim's size
    full_mailboxes: frozenset[str] = frozenset()  # email senders whose window is used up


async def hourly_room(
    conn: AsyncConnection,
    channels: list[str],
    max_per_hour: Mapping[str, int],
    now: datetime,
    limit: int,
) -> Window:
    """Channels and email senders that may still send within their hourly window.

    `max_per_hour` keys are channels ("email", "sms") or one email sender
    ("email:<mailbox name>"; an SMS node has one sender, its channel). The
    window counts rows claimed in the last hour from the database (every
    node's, and those of before a restart) rather than a counter in memory.
    A capped channel or sender with little room left shrinks the whole claim;
    claims are small, so the others lose at most a cycle. On PostgreSQL two
    nodes counting at once may each use the same room: the window can be
    exceeded by at most one claim per other node.
    """
    caps = {ch: n for ch, n in max_per_hour.items() if ch in channels}
    senders = {
        key.split(":", 1)[1]: n
        for key, n in max_per_hour.items()
        if key.startswith("email:") and "email" in channels
    }
    if not caps and not senders:
        return Window(channels, limit)
    since = now - timedelta(hours=1)
    claimed = (
        select(outbox_t.c.channel, outbox_t.c.mailbox, func.count())
        .where(outbox_t.c.claimed_at >= since)
        .where(outbox_t.c.status != OutboxStatus.QUEUED.value)
        .where(outbox_t.c.channel.in_(sorted({*caps, *(["email"] if senders else [])})))
        .group_by(outbox_t.c.channel, outbox_t.c.mailbox)
    )
    used: dict[str, int] = {}
    for channel, mailbox, count in (await conn.execute(claimed)).tuples():
        used[channel] = used.get(channel, 0) + int(count)
        if channel == "email" and mailbox is not None:
            used[f"email:{mailbox}"] = int(count)
    room = {ch: cap - used.get(ch, 0) for ch, cap in caps.items()}
    open_channels = [ch for ch in channels if room.get(ch, 1) > 0]
    sender_room = {m: cap - used.get(f"email:{m}", 0) for m, cap in senders.items()}
    full = frozenset(m for m, left in sender_room.items() if left <= 0)
    capped = [room[ch] for ch in open_channels if ch in room]
    capped += [left for left in sender_room.values() if left > 0]
    return Window(open_channels, min([limit, *capped]), full)
