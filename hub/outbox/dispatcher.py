"""The dispatcher: claims due outbox rows, sends them, records what happened.

Claiming happens in a short transaction: on PostgreSQL `FOR UPDATE SKIP LOCKED`,
so several `crmhub serve` nodes never take the same row; on SQLite the write
transaction (BEGIN IMMEDIATE) is the single writer, which gives the same
guarantee within one file. The claim marks the row "sending" with
`claimed_at` (a lease) and counts the attempt; the provider call happens
outside any transaction; the result is written in a later one (together with
the other results that came in meanwhile and the next claims, see
`run_once`), fenced by the attempt number so a node whose lease expired
cannot overwrite a newer claim.

At-least-once, deliberately: Twilio has no idempotency key, so either a
crash during the call may lose the message (at-most-once) or may send it
twice (at-least-once). A claim whose lease expired is sent again, because a
silently lost agent reply or an undelivered appointment reminder is worse
than a rare duplicate SMS, and the window is small: only a crash (or a
timeout) during the one HTTP call itself. A live node's claim never expires
mid-call because `send_timeout_seconds` < `lease_seconds`. The status
callback carries the outbox id, so a message whose MessageSid we never
recorded is still matched when Twilio reports on it. SMTP has no idempotency
key either, but the row's Message-ID is fixed at enqueue, so a duplicate
sent after a crash is at least recognisable as the same mail.

What "accepted" means differs by channel: Twilio's 2xx only queues the SMS
(delivery is reported later by its status callback), while SMTP's 250 means
the relay took responsibility for the mail, so the interaction shows "sent".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.ext.asyncio import AsyncConnection

from channels.base import Channel, DeliveryResult, DeliveryState, OutboundMessage, Sender
from hub.config import OutboxConfig
from hub.events.bus import Event, EventBus
from hub.outbox.claims import Claim, due_query, hourly_room
from hub.outbox.outcomes import Outcome, finish, record_outcomes
from hub.outbox.queue import (
    OutboxStatus,
    consent_applies,
    is_marketing,
)
from hub.store.db import Database, is_outage
from hub.store.models import utcnow
from hub.store.sqlite_driver import defer_many
from hub.store.tables import outbox_t

log = logging.getLogger(__name__)

RECORD_TRIES = 5
# The longest a finished send waits for others to share its cycle (see run_once).
MAX_HOLD_SECONDS = 0.01
_CHANNEL_NAMES = {Channel.SMS: "SMS", Channel.EMAIL: "email"}

# Built once: SQLAlchemy then finds it in its compiled cache without walking it.
_CLAIM = (
    update(outbox_t)
    .where(outbox_t.c.id == bindparam("b_id"))
    .values(
        status=OutboxStatus.SENDING.value,
        claimed_at=bindparam("b_now"),
        attempts=bindparam("b_attempt"),
        updated_at=bindparam("b_now"),
        uncertain=outbox_t.c.uncertain | bindparam("b_uncertain"),
    )
)


def outbound_message(row: Any, sender: Sender) -> OutboundMessage:
    """The adapter's input for an outbox row."""
    channel = Channel(row.channel)
    if channel is Channel.EMAIL:
        # No sender: From is the row's mailbox's address, which MailboxSenders
        # picks by `mailbox`; the channel-wide default could be another mailbox.
        metadata: dict[str, Any] = {"mailbox": row.mailbox, "outbox_id": row.id}
        if is_marketing(row):
            # The sender refuses marketing mail without both List-Unsubscribe targets.
            links = row.unsubscribe or {}
            metadata.update(
                marketing=True,
                unsubscribe_url=links.get("url", ""),
                unsubscribe_mailto=links.get("mailto", ""),
            )
        if row.html:
            metadata["html"] = row.html
        return OutboundMessage(
            channel=channel,
            recipient=row.recipient,
            text=row.body,
            subject=row.subject,
            headers=dict(row.headers or {}),
            metadata=metadata,
        )
    return OutboundMessage(
        channel=channel,
        recipient=row.recipient,
        text=row.body,
        sender=sender.sender,
        metadata={"status_callback_query": f"outbox={row.id}"},
    )


class Dispatcher:
    def __init__(
        self,
        db: Database,
        config: OutboxConfig,
        senders: Mapping[str, Sender],
        bus: EventBus | None = None,
    ) -> None:
        self.db = db
        self.bus = bus
        self.config = config
        self.senders = dict(senders)
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._next_send: dict[str, float] = {}
        # Claims wait their turn at the channel's rate; keep a round short enough
        # that none of its claims can outlive the lease and be taken twice.
        slowest = min((x.rate_per_second for x in self.senders.values()), default=1.0)
        self.batch_size = max(1, min(config.batch_size, int(slowest * config.lease_seconds / 2)))

    def wake(self) -> None:
        """Look for due rows now (a message was just queued on this node)."""
        self._wake.set()

    async def start(self) -> None:
        if self.senders and self._task is None:
            self._task = asyncio.create_task(self._run(), name="outbox-dispatcher")

    async def stop(self) -> None:
        """Let the message in flight finish (bounded by the send timeout), then stop."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, self.config.send_timeout_seconds + 5)
            except TimeoutError:
                log.warning("dispatcher did not stop in time; its claim will expire")
            self._task = None
        for sender in self.senders.values():
            await sender.close()

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                done = await self.run_once()
            except Exception:
                log.exception("outbox round failed; retrying after the poll interval")
                done = 0
            if done == 0 and not self._stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.config.poll_seconds)

    async def run_once(self) -> int:
        """Send due rows while there are any; returns how many rows it handled.

        A pipeline, not rounds: each channel keeps as many sends going as its
        sender allows (`concurrency`: the SMTP pools' connections,
        sms.max_in_flight Twilio requests), and whenever sends finish, one
        transaction records all their outcomes and claims as many new rows
        as slots came free. A row is marked "sending" in a commit before its
        send; a connection sends its next row only once the outcome of its last
        one is committed (so a crash leaves at most one sent-but-unrecorded
        message per connection); each commit serves a whole group of sends.

        The call goes on while any channel has due rows: a campaign's million
        rows are one call, never drained and refilled. At most `batch_size`
        rows are claimed and unrecorded at once, and rows whose lease expired
        are looked for at the start and every `batch_size` rows. A channel whose
        claim came back short (nothing due, or its hourly window full) is
        asked again only after `poll_seconds` or a `wake()`, as an idle node
        would: a node with both channels must not spend a query per cycle on
        the one without work, nor stop the other's pipeline because of it.
        It returns once no send is in flight and every channel came back short.
        """
        handled = 0
        hold = 0.0  # how long the last cycle took
        slots = {ch: asyncio.Semaphore(self._concurrency(ch)) for ch in self.senders}
        in_flight: dict[asyncio.Task[DeliveryResult | None], Claim] = {}
        done: list[Outcome] = []
        dry: dict[str, float] = {}  # channel -> when its claim came back short
        takeover_at = 0  # look for expired leases once `handled` reaches this
        try:
            while True:
                if self._wake.is_set():  # something was queued: ask every channel again
                    self._wake.clear()
                    dry.clear()
                now = time.monotonic()
                for channel in [ch for ch, t in dry.items() if now - t >= self.config.poll_seconds]:
                    del dry[channel]
                room = {} if self._stopping else self._room(in_flight, dry)
                if done or room:
                    started = time.perf_counter()
                    takeover = bool(room) and handled >= takeover_at
                    claims, finished, short = await self._cycle(done, room, takeover)
                    hold = min(time.perf_counter() - started, MAX_HOLD_SECONDS)
                    for claim, result in done:
                        if result is not None:  # recorded: its connection may send again
                            slots[claim.row.channel].release()
                    done = []
                    handled += len(claims) + finished
                    if takeover:
                        takeover_at = handled + self.batch_size
                    dry.update(dict.fromkeys(short, time.monotonic()))
                    for claim in claims:
                        slot = slots[claim.row.channel]
                        task = asyncio.create_task(self._send_or_release(claim, slot))
                        in_flight[task] = claim
                if not in_flight:
                    if self._stopping or all(ch in dry for ch in self.senders):
                        return handled
                    continue  # a channel still has room (its claim was capped, not short)
                finished_sends, _ = await asyncio.wait(
                    in_flight, return_when=asyncio.FIRST_COMPLETED
                )
                if hold and len(finished_sends) < len(in_flight) and not self._stopping:
                    # Group commit: a cycle costs about the same for one outcome as
                    # for several (its COMMIT waits for the disk), so wait up to one
                    # cycle's time for the other sends before starting the next one.
                    # Against a provider that answers at once, sends finish close
                    # together and one cycle then records them all instead of a cycle
                    # each; against a slow one this adds at most a cycle's time.
                    more, _ = await asyncio.wait(in_flight.keys() - finished_sends, timeout=hold)
                    finished_sends |= more
                for task in finished_sends:
                    done.append((in_flight.pop(task), task.result()))
        finally:
            if in_flight or done:
                await self._settle(in_flight, done)

    def _room(self, in_flight: Mapping[Any, Claim], dry: Mapping[str, float]) -> dict[str, int]:
        """Free send slots per channel (not of channels that came back short), within
        `batch_size` claims unrecorded at once."""
        budget = self.batch_size - len(in_flight)
        busy: dict[str, int] = {}
        for claim in in_flight.values():
            busy[claim.row.channel] = busy.get(claim.row.channel, 0) + 1
        room: dict[str, int] = {}
        for channel in sorted(self.senders):
            free = min(budget, self._concurrency(channel) - busy.get(channel, 0))
            if free > 0 and channel not in dry:
                room[channel] = free
                budget -= free
        return room

    def _concurrency(self, channel: str) -> int:
        return max(1, int(getattr(self.senders[channel], "concurrency", 1)))

    async def _send_or_release(
        self, claim: Claim, slot: asyncio.Semaphore
    ) -> DeliveryResult | None:
        # One of the channel's connections / requests in flight. It stays taken
        # until the outcome is committed (run_once releases it): a crash can then
        # leave at most one sent-but-unrecorded message per connection.
        await slot.acquire()
        if self._stopping:
            slot.release()
            return None  # given back unsent: no node waits out its lease
        try:
            return await self._send(claim)
        except BaseException:
            slot.release()
            raise

    async def _settle(
        self, in_flight: dict[asyncio.Task[DeliveryResult | None], Claim], done: list[Outcome]
    ) -> None:
        """After an error: let the sends already out finish and record them, so a
        message that went out is not sent again when its lease expires."""
        if in_flight:
            results = await asyncio.gather(*in_flight, return_exceptions=True)
            for claim, result in zip(in_flight.values(), results, strict=True):
                if not isinstance(result, BaseException):
                    done.append((claim, result))
        if done:
            try:
                await self._cycle(done, {})
            except Exception:
                log.exception(
                    "outbox: recording %s outcome(s) failed; leases will expire", len(done)
                )

    async def _cycle(
        self, done: list[Outcome], room: Mapping[str, int], takeover: bool = False
    ) -> tuple[list[Claim], int, set[str]]:
        """One transaction: the outcomes of finished sends, then new claims (and the
        channels that had fewer rows than asked). Retried
        while the database is briefly unreachable when it holds outcomes: a message
        that went out but was never recorded would be sent again."""
        for attempt in range(RECORD_TRIES):
            events: list[Event] = []
            try:
                # A bare connection: no ORM session on the path of every message.
                async with self.db.write_engine.begin() as conn:
                    if done:
                        events += await record_outcomes(conn, done, self.config)
                    claims, finished, short = (
                        await self._claim(conn, room, events, takeover) if room else ([], 0, set())
                    )
            except Exception as exc:
                if not done or not is_outage(exc) or attempt == RECORD_TRIES - 1:
                    raise
                log.warning("outbox: recording %s outcome(s) failed; retrying", len(done))
                await asyncio.sleep(0.5 * 2**attempt)
                continue
            self._publish(events)
            return claims, finished, short
        raise AssertionError("unreachable")

    async def _claim(
        self, conn: AsyncConnection, room: Mapping[str, int], events: list[Event], takeover: bool
    ) -> tuple[list[Claim], int, set[str]]:
        """Claims to send, how many rows were settled without sending (blocked,
        expired), and the channels of `room` that got fewer rows than asked; delivery
        events of the settled rows go to `events`."""
        now = utcnow()
        # Counted in the claim's transaction: exact under SQLite's single writer.
        window = await hourly_room(
            conn, sorted(room), self.config.max_per_hour, now, sum(room.values())
        )
        channels, limit = window.channels, window.limit
        rows: list[Any] = []
        got: dict[str, int] = {}
        binds = {"b_now": now, "b_expired": now - timedelta(seconds=self.config.lease_seconds)}
        full = window.full_mailboxes
        for channel in channels:
            before = len(rows)
            # Expired leases (a node died) are rare: looked for now and then (run_once).
            for expired in (True, False) if takeover else (False,):
                want = min(room[channel] - (len(rows) - before), limit - len(rows))
                if want <= 0:
                    break
                query = due_query(
                    channel, expired, full if channel == Channel.EMAIL.value else frozenset(),
                    locked=not self.db.sqlite,
                )  # fmt: skip
                rows += (await conn.execute(query, {**binds, "b_limit": want})).all()
            got[channel] = len(rows) - before
        blocked = {
            (row.customer_id, row.channel) for row in rows if row.opted_out and consent_applies(row)
        }
        claims: list[Claim] = []
        finished = 0
        for row in rows:
            uncertain = row.status == OutboxStatus.SENDING.value
            if uncertain:
                # Claimed, maybe sent, never recorded: the node died in between.
                # SMTP and Twilio cannot be asked whether they took it.
                log.warning("outbox %s: lease expired (node died?); taking it over", row.id)
            settled = self._settle_unsent(row, uncertain, blocked)
            if settled is not None:
                status, error = settled
                event = await finish(
                    conn, row.id, status, row.interaction_id, status.value, error=error
                )
                if uncertain:
                    await conn.execute(
                        update(outbox_t).where(outbox_t.c.id == row.id).values(uncertain=True)
                    )
                events += [event] if event else []
                finished += 1
                continue
            claims.append(Claim(row, row.attempts + 1, uncertain))
        if claims:
            # Deferred (SQLite): sent with the COMMIT, in the same trip to SQLite's thread.
            await defer_many(
                conn,
                _CLAIM,
                [
                    {"b_id": c.row.id, "b_attempt": c.attempt, "b_uncertain": c.uncertain,
                     "b_now": now}
                    for c in claims
                ],
            )  # fmt: skip
        return claims, finished, {ch for ch, n in room.items() if got.get(ch, 0) < n}

    def _settle_unsent(
        self, row: Any, uncertain: bool, blocked: set[tuple[int, str]]
    ) -> tuple[OutboxStatus, str] | None:
        """Why a due row is closed instead of sent, if it is."""
        if (
            uncertain
            and row.campaign_id is not None
            and self.config.in_flight_after_crash == "skip"
        ):
            return (
                OutboxStatus.FAILED,
                "in flight at a crash; skipped (outbox.in_flight_after_crash)",
            )
        if (row.customer_id, row.channel) in blocked:
            name = _CHANNEL_NAMES.get(Channel(row.channel), row.channel)
            return OutboxStatus.BLOCKED, f"recipient opted out of {name}"
        if row.attempts >= self.config.max_attempts:
            return OutboxStatus.FAILED, "lease expired after the last attempt; outcome unknown"
        return None

    async def _pace(self, channel: str, rate: float) -> None:
        """Keep to the channel's rate per second (Twilio queues, then rejects, bursts)."""
        now = time.monotonic()
        start = max(now, self._next_send.get(channel, now))
        self._next_send[channel] = start + 1.0 / rate
        if start > now:
            await asyncio.sleep(start - now)

    async def _send(self, claim: Claim) -> DeliveryResult:
        row = claim.row
        sender = self.senders[row.channel]
        await self._pace(row.channel, sender.rate_per_second)
        message = outbound_message(row, sender)
        try:
            async with asyncio.timeout(self.config.send_timeout_seconds):
                return await sender.send(message)
        except TimeoutError:
            return DeliveryResult(
                DeliveryState.TEMPORARY_FAILURE,
                error_code="timeout",
                error="no answer within send_timeout_seconds",
            )
        except Exception as exc:
            log.exception("outbox %s: adapter raised", row.id)
            return DeliveryResult(
                DeliveryState.TEMPORARY_FAILURE, error_code="error", error=repr(exc)[:500]
            )

    def _publish(self, events: list[Event]) -> None:
        if self.bus is not None:
            for event in events:
                self.bus.publish(event)
