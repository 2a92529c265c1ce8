"""Writing what became of sends: many outcomes in one transaction.

The dispatcher records the results of every send that finished since its last
commit together, in the transaction that also claims the next rows (see
`Dispatcher.run_once`). On SQLite each commit waits for the disk (fsync), so
one commit per message was most of a campaign's cost; now it is one commit
per cycle, however many sends finished in it. The common case (accepted by
the provider) is a handful of executemany statements for the whole group;
retries and failures are rare and written row by row.

Every write is fenced by the claim (row id, "sending", attempt number): a node
whose lease expired cannot overwrite a newer claim of the same row.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case, func, literal_column, or_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from channels.base import HUB_RANKS, Channel, DeliveryResult, DeliveryState
from channels.registry import statuses_of
from hub.config import OutboxConfig
from hub.events.bus import Event
from hub.events.kinds import interaction_delivery
from hub.outbox.claims import Claim
from hub.outbox.queue import (
    OutboxStatus,
    backoff,
    opt_out_source,
    record_opt_out,
    set_interaction_status,
    status_advances,
)
from hub.store.models import utcnow
from hub.store.sqlite_driver import defer_many
from hub.store.tables import conversation_t, customer_t, interaction_t, outbox_t

log = logging.getLogger(__name__)

ACCEPTED = (DeliveryState.QUEUED, DeliveryState.SENT, DeliveryState.DELIVERED)

# One outcome: the claim and the provider's answer, or None for a claim given
# back unsent (the node is stopping).
Outcome = tuple[Claim, DeliveryResult | None]


def accepted_status(channel: str) -> str:
    """The interaction's delivery status once the provider took the message."""
    return "sent" if channel == Channel.EMAIL.value else "queued"


# The statements of every cycle, built once: SQLAlchemy finds a statement it has
# seen in its compiled cache without walking it again for its cache key, which
# cost more than running it. Every write is fenced by the claim (b_id, b_attempt).
_FENCE = (
    (outbox_t.c.id == bindparam("b_id"))
    & (outbox_t.c.status == OutboxStatus.SENDING.value)
    & (outbox_t.c.attempts == bindparam("b_attempt"))
)
_RELEASE = (
    update(outbox_t)
    .where(_FENCE)
    .values(status=OutboxStatus.QUEUED.value, attempts=bindparam("b_before"))
)
_SENT = (
    update(outbox_t)
    .where(_FENCE)
    .values(
        status=OutboxStatus.SENT.value,
        provider_id=bindparam("b_provider_id"),
        last_error=None,
        updated_at=bindparam("b_now"),
    )
)
_CONTACTED = (
    update(customer_t)
    .where(customer_t.c.id == bindparam("b_id"))
    .values(last_outbound_at=bindparam("b_now"))
)
_CONVERSATION_MOVED = (
    update(conversation_t)
    .where(conversation_t.c.id == bindparam("b_id"))
    .values(last_activity_at=bindparam("b_now"))
)


async def record_outcomes(
    conn: AsyncConnection, outcomes: Sequence[Outcome], config: OutboxConfig
) -> list[Event]:
    """Write the outcomes in the caller's transaction; the events to publish after it."""
    now = utcnow()
    accepted = [(c, r) for c, r in outcomes if r is not None and r.state in ACCEPTED]
    released = [c for c, r in outcomes if r is None]
    events: list[Event] = []
    if accepted:
        events += await _record_accepted(conn, accepted, now)
    if released:
        await conn.execute(
            _RELEASE,
            [
                {"b_id": c.row.id, "b_attempt": c.attempt, "b_before": c.attempt - 1}
                for c in released
            ],
        )
    for claim, result in outcomes:
        if result is not None and result.state not in ACCEPTED:
            events += await _record_refusal(conn, claim, result, config, now)
    return events


async def _record_accepted(
    conn: AsyncConnection, accepted: list[tuple[Claim, DeliveryResult]], now: datetime
) -> list[Event]:

    def check(rowcount: int) -> None:
        if rowcount not in (-1, len(accepted)):
            log.warning(
                "outbox: %s of %s sent rows had their claim taken over meanwhile",
                len(accepted) - rowcount,
                len(accepted),
            )

    # Deferred (SQLite): these writes ride along with the cycle's next statement, the
    # claim query, instead of a trip to SQLite's thread each (see defer_many).
    await defer_many(
        conn,
        _SENT,
        [
            {"b_id": c.row.id, "b_attempt": c.attempt, "b_provider_id": r.provider_id, "b_now": now}
            for c, r in accepted
        ],
        check,
    )
    events = await _advance_interactions(conn, accepted)
    # The customers were contacted now; their conversations moved.
    customers = sorted({c.row.customer_id for c, _ in accepted})
    await defer_many(conn, _CONTACTED, [{"b_id": i, "b_now": now} for i in customers])
    conversations = sorted(
        {c.row.conversation_id for c, _ in accepted if c.row.conversation_id is not None}
    )
    if conversations:
        await defer_many(
            conn, _CONVERSATION_MOVED, [{"b_id": i, "b_now": now} for i in conversations]
        )
    return events


def _blocking(channel: str, new: str) -> frozenset[str] | None:
    """The statuses `new` may not replace (as `status_advances`), or None when it never
    replaces any (then only the provider id is written)."""
    statuses = statuses_of(channel)
    if new in statuses.all_final:
        return statuses.all_final
    ranks = {**HUB_RANKS, **statuses.ranks}
    if new not in ranks:
        return None
    return statuses.all_final | {s for s, rank in ranks.items() if rank >= ranks[new]}


def _literals(words: frozenset[str]) -> list[Any]:
    """Status words inlined into the statement (executemany allows no expanding IN).
    They are the channels' own constants, never input; checked all the same."""
    assert all(re.fullmatch(r"[a-z_-]+", w) for w in words), words
    return [literal_column(f"'{w}'") for w in sorted(words)]


@functools.cache
def _advance_statement(channel: str, new: str) -> Any:
    """Per channel and status: the interaction's status forward (only), its provider
    id if it had none. Built once per pair, as the statements above."""
    values: dict[str, Any] = {
        "provider_id": func.coalesce(interaction_t.c.provider_id, bindparam("b_provider_id"))
    }
    blocking = _blocking(channel, new)
    if blocking is not None:
        status = interaction_t.c.delivery_status
        values["delivery_status"] = case(
            (
                or_(status.is_(None), status.not_in(_literals(blocking))),
                bindparam("b_status"),
            ),
            else_=status,
        )
    return update(interaction_t).where(interaction_t.c.id == bindparam("b_id")).values(values)


async def _advance_interactions(
    conn: AsyncConnection, accepted: list[tuple[Claim, DeliveryResult]]
) -> list[Event]:
    """Each sent message's interaction: its status forward (only), its provider id if it
    had none. One executemany per channel; the status read at the claim (the row's
    `delivery_status`) decides the event, the CASE decides the row, so a provider's
    report that overtook us is never undone."""
    events: list[Event] = []
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for claim, result in accepted:
        row = claim.row
        if row.interaction_id is None:
            continue
        new = accepted_status(row.channel)
        groups.setdefault((row.channel, new), []).append(
            {"b_id": row.interaction_id, "b_provider_id": result.provider_id, "b_status": new}
        )
        if status_advances(row.channel, row.delivery_status, new):
            events.append(
                interaction_delivery(
                    interaction_id=row.interaction_id,
                    customer_id=row.customer_id,
                    conversation_id=row.conversation_id,
                    delivery_status=new,
                    error_code=None,
                    team_id=row.team_id,
                )
            )
    for (channel, new), params in groups.items():
        await defer_many(conn, _advance_statement(channel, new), params)
    return events


async def _record_refusal(
    conn: AsyncConnection,
    claim: Claim,
    result: DeliveryResult,
    config: OutboxConfig,
    now: datetime,
) -> list[Event]:
    """A temporary failure waits for its retry; anything else fails the row for good."""
    row, fence = claim.row, claim.fence()
    error = f"{result.error_code}: {result.error}" if result.error_code else result.error
    if result.state == DeliveryState.TEMPORARY_FAILURE and claim.attempt < config.max_attempts:
        delay = backoff(claim.attempt, config.retry_base_seconds, config.retry_max_seconds)
        log.info(
            "outbox %s: attempt %s failed (%s); retry in %.2fs", row.id, claim.attempt, error, delay
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
        return []
    log.warning("outbox %s: failed after %s attempt(s): %s", row.id, claim.attempt, error)
    event = await finish(
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


async def finish(
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
