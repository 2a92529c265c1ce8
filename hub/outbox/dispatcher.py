"""The dispatcher: claims due outbox rows, sends them, records what happened.

Claiming is one short transaction: on PostgreSQL `FOR UPDATE SKIP LOCKED`, so
several `crmhub serve` nodes never take the same row; on SQLite the write
transaction (BEGIN IMMEDIATE) is the single writer, which gives the same
guarantee within one file. The claim marks the row "sending" with
`claimed_at` (a lease) and counts the attempt; the provider call happens
outside any transaction; the result is written in a second one, fenced by
the attempt number so a node whose lease expired cannot overwrite a newer
claim.

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
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from channels.base import Channel, DeliveryResult, DeliveryState, OutboundMessage, Sender
from hub.config import OutboxConfig
from hub.events.bus import Event, EventBus
from hub.outbox.claims import Claim, due_query, hourly_room
from hub.outbox.queue import (
    OutboxStatus,
    backoff,
    consent_applies,
    is_marketing,
    opt_out_source,
    opted_out,
    record_opt_out,
    rows_by_id,
    set_interaction_status,
)
from hub.store.db import Database, is_outage
from hub.store.models import utcnow
from hub.store.tables import conversation_t, customer_t, outbox_t

log = logging.getLogger(__name__)

RECORD_TRIES = 5
_ACCEPTED = (DeliveryState.QUEUED, DeliveryState.SENT, DeliveryState.DELIVERED)
_CHANNEL_NAMES = {Channel.SMS: "SMS", Channel.EMAIL: "email"}


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


def accepted_status(channel: str) -> str:
    """The interaction's delivery status once the provider took the message."""
    return "sent" if channel == Channel.EMAIL.value else "queued"


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
        # A claimed row is marked "sending" in the claim's commit: claim no more than
        # can be on the wire at once, so that what a crash leaves "sending" (uncertain:
        # sent or not, nobody can tell) is only what was really in flight.
        in_flight = sum(max(1, int(getattr(x, "concurrency", 1))) for x in self.senders.values())
        self.claim_size = max(1, min(self.batch_size, in_flight))

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
        """One round: claim due rows, send them. Returns how many rows it handled.

        Each channel sends as many at once as its sender allows (`concurrency`:
        the SMTP pools' connections, sms.max_in_flight Twilio requests); the
        channel's rate still paces them, and each result is recorded as soon
        as its answer is in.
        """
        handled = 0
        while handled < self.batch_size and not self._stopping:
            want = min(self.claim_size, self.batch_size - handled)
            claims, finished = await self._claim(want)
            if not claims and not finished:
                break
            lanes: dict[str, list[Claim]] = {}
            for claim in claims:
                lanes.setdefault(claim.row.channel, []).append(claim)
            await asyncio.gather(*(self._lane(ch, items) for ch, items in lanes.items()))
            handled += len(claims) + finished
        return handled

    async def _lane(self, channel: str, claims: list[Claim]) -> None:
        limit = asyncio.Semaphore(max(1, int(getattr(self.senders[channel], "concurrency", 1))))

        async def one(claim: Claim) -> None:
            async with limit:
                if self._stopping:
                    await self._release([claim])
                    return
                result = await self._send(claim)
                await self._record_durably(claim, result)

        await asyncio.gather(*(one(claim) for claim in claims))

    async def _release(self, claims: list[Claim]) -> None:
        """Give back claims never sent (shutting down), so no node waits out their lease."""
        async with self.db.write() as s:
            conn = await s.connection()
            for claim in claims:
                await conn.execute(
                    update(outbox_t)
                    .where(claim.fence())
                    .values(status=OutboxStatus.QUEUED.value, attempts=claim.attempt - 1)
                )

    async def _claim(self, limit: int) -> tuple[list[Claim], int]:
        """Claims to send, and how many rows were settled without sending (blocked, expired)."""
        now = utcnow()
        query = due_query(now, self.config.lease_seconds)
        if not self.db.sqlite:
            query = query.with_for_update(skip_locked=True)
        claims: list[Claim] = []
        finished = 0
        # Delivery events of this transaction; published after its commit.
        events: list[Event] = []
        async with self.db.write() as s:
            conn = await s.connection()
            # Counted in the claim's transaction: exact under SQLite's single writer.
            channels, limit = await hourly_room(
                conn, sorted(self.senders), self.config.max_per_hour, now, limit
            )
            if not channels:
                return [], 0
            query = query.where(outbox_t.c.channel.in_(channels)).limit(limit)
            ids = list((await conn.execute(query)).scalars())
            for row in await rows_by_id(conn, ids):
                uncertain = row.status == OutboxStatus.SENDING.value
                if uncertain:
                    # Claimed, maybe sent, never recorded: the node died in between.
                    # SMTP and Twilio cannot be asked whether they took it.
                    log.warning("outbox %s: lease expired (node died?); taking it over", row.id)
                    if row.campaign_id is not None and self.config.in_flight_after_crash == "skip":
                        event = await self._finish(
                            conn,
                            row.id,
                            OutboxStatus.FAILED,
                            row.interaction_id,
                            "failed",
                            error="in flight at a crash; skipped (outbox.in_flight_after_crash)",
                        )
                        await conn.execute(
                            update(outbox_t).where(outbox_t.c.id == row.id).values(uncertain=True)
                        )
                        events += [event] if event else []
                        finished += 1
                        continue
                channel = Channel(row.channel)
                if consent_applies(row) and await opted_out(conn, row.customer_id, channel):
                    event = await self._finish(
                        conn,
                        row.id,
                        OutboxStatus.BLOCKED,
                        row.interaction_id,
                        "blocked",
                        error=f"recipient opted out of {_CHANNEL_NAMES.get(channel, channel)}",
                    )
                    events += [event] if event else []
                    finished += 1
                    continue
                if row.attempts >= self.config.max_attempts:
                    event = await self._finish(
                        conn,
                        row.id,
                        OutboxStatus.FAILED,
                        row.interaction_id,
                        "failed",
                        error="lease expired after the last attempt; outcome unknown",
                    )
                    events += [event] if event else []
                    finished += 1
                    continue
                attempt = row.attempts + 1
                await conn.execute(
                    update(outbox_t)
                    .where(outbox_t.c.id == row.id)
                    .values(
                        status=OutboxStatus.SENDING.value,
                        claimed_at=now,
                        attempts=attempt,
                        updated_at=now,
                        **({"uncertain": True} if uncertain else {}),
                    )
                )
                claims.append(Claim(row, attempt))
        self._publish(events)
        return claims, finished

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

    async def _record_durably(self, claim: Claim, result: DeliveryResult) -> None:
        """Write the outcome, retrying a busy or briefly unreachable database.

        A message that went out but was never recorded would be sent again when
        its lease expires, so the write is worth a few tries before giving up.
        """
        for attempt in range(RECORD_TRIES):
            try:
                events = await self._record(claim, result)
                self._publish(events)
                return
            except Exception as exc:
                if not is_outage(exc) or attempt == RECORD_TRIES - 1:
                    raise
                log.warning("outbox %s: recording the result failed; retrying", claim.row.id)
                await asyncio.sleep(0.5 * 2**attempt)

    async def _record(self, claim: Claim, result: DeliveryResult) -> list[Event]:
        """Write one send's outcome; returns the events to publish after the commit."""
        row, now = claim.row, utcnow()
        fence = claim.fence()
        error = f"{result.error_code}: {result.error}" if result.error_code else result.error
        events: list[Event] = []
        async with self.db.write() as s:
            conn = await s.connection()
            if result.state in _ACCEPTED:
                changed = await conn.execute(
                    update(outbox_t)
                    .where(fence)
                    .values(
                        status=OutboxStatus.SENT.value,
                        provider_id=result.provider_id,
                        last_error=None,
                        updated_at=now,
                    )
                )
                if changed.rowcount == 0:
                    log.warning("outbox %s: sent, but the claim was taken over", row.id)
                if row.interaction_id is not None:
                    event = await set_interaction_status(
                        conn,
                        row.interaction_id,
                        accepted_status(row.channel),
                        provider_id=result.provider_id,
                    )
                    if event is not None:
                        events.append(event)
                await self._touch(conn, row, now)
                return events
            retry = (
                result.state == DeliveryState.TEMPORARY_FAILURE
                and claim.attempt < self.config.max_attempts
            )
            if retry:
                delay = backoff(
                    claim.attempt, self.config.retry_base_seconds, self.config.retry_max_seconds
                )
                log.info(
                    "outbox %s: attempt %s failed (%s); retry in %.2fs",
                    row.id,
                    claim.attempt,
                    error,
                    delay,
                )
                await conn.execute(
                    update(outbox_t)
                    .where(fence)
                    .values(
                        status=OutboxStatus.QUEUED.value,
                        last_error=error,
                        updated_at=now,
                        next_attempt_at=now + timedelta(seconds=delay),
                    )
                )
                return events
            log.warning("outbox %s: failed after %s attempt(s): %s", row.id, claim.attempt, error)
            event = await self._finish(
                conn,
                row.id,
                OutboxStatus.FAILED,
                row.interaction_id,
                "failed",
                error=error,
                error_code=result.error_code,
                fence=fence,
            )
            source = opt_out_source(row.channel, result.error_code)
            if source is not None:
                await record_opt_out(conn, row.customer_id, row.channel, source)
        return [event] if event else []

    async def _finish(
        self,
        conn: AsyncConnection,
        outbox_id: int,
        status: OutboxStatus,
        interaction_id: int | None,
        delivery_status: str,
        *,
        error: str | None,
        error_code: str | None = None,
        fence: Any = None,
    ) -> Event | None:
        """Close the row; the interaction's delivery event, if it changed, is returned."""
        where = fence if fence is not None else outbox_t.c.id == outbox_id
        await conn.execute(
            update(outbox_t)
            .where(where)
            .values(status=status.value, last_error=error, updated_at=utcnow())
        )
        if interaction_id is None:
            return None
        return await set_interaction_status(
            conn, interaction_id, delivery_status, error_code=error_code, error=error
        )

    def _publish(self, events: list[Event]) -> None:
        if self.bus is not None:
            for event in events:
                self.bus.publish(event)

    async def _touch(self, conn: AsyncConnection, row: Any, now: datetime) -> None:
        """The customer was contacted now; the conversation moved."""
        await conn.execute(
            update(customer_t)
            .where(customer_t.c.id == row.customer_id)
            .values(last_outbound_at=now)
        )
        if row.conversation_id is not None:
            await conn.execute(
                update(conversation_t)
                .where(conversation_t.c.id == row.conversation_id)
                .values(last_activity_at=now)
            )
