"""Who of a chunk of the audience may get a marketing message, and where it goes.

Read for a whole chunk in a few statements (never one query per customer):
the address (deliverable first, as the templates' context picks it), the
newest consent per purpose on the channel, the erased-and-opted-out
suppression list, and how many marketing messages each got this week.
A customer left out gets a reason, which the run counts:

- `no_address`: no email / phone identity;
- `bounced`: the only email addresses hard-bounced;
- `opted_out`: the newest consent of some purpose on the channel is an opt-out
  (STOP, an unsubscribe click, a provider's opt-out error, the API);
- `erased_opt_out`: the address belonged to an erased person who had opted out;
- `frequency_cap`: campaigns.max_per_week marketing messages on this channel
  in the last 7 days (with `over_cap: defer` they wait instead).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.privacy.suppression import MIN_KEY, digest
from hub.store.models import ConsentState, IdentityKind
from hub.store.tables import consent_t, identity_t, outbox_t, suppression_t

WEEK = timedelta(days=7)


# Runs count what expansion held back for later beside what it left out:
# "deferred:<reason>" keys in campaign_run.suppressed (over_cap "defer").
DEFERRED = "deferred:"


@dataclass(frozen=True, slots=True)
class Recipient:
    customer_id: int
    identity_id: int
    address: str
    over_cap: bool  # at the weekly cap (deferred or skipped by the caller)


async def _addresses(
    conn: AsyncConnection, ids: Sequence[int], kind: IdentityKind
) -> tuple[dict[int, tuple[int, str]], set[int]]:
    """customer -> (identity id, value) of the address to use; customers whose only
    addresses bounced."""
    rows = await conn.execute(
        select(
            identity_t.c.customer_id,
            identity_t.c.id,
            identity_t.c.value,
            identity_t.c.undeliverable_at,
        )
        .where(identity_t.c.customer_id.in_(ids))
        .where(identity_t.c.kind == kind.value)
        .order_by(
            identity_t.c.customer_id,
            identity_t.c.undeliverable_at.is_not(None),
            identity_t.c.primary.desc(),
            identity_t.c.id,
        )
    )
    chosen: dict[int, tuple[int, str]] = {}
    bounced: set[int] = set()
    for cid, iid, value, undeliverable in rows:
        if cid in chosen or cid in bounced:
            continue
        if undeliverable is not None:
            bounced.add(cid)  # sorted deliverable first: none of theirs is deliverable
        else:
            chosen[cid] = (iid, value)
    return chosen, bounced


async def _opted_out(conn: AsyncConnection, ids: Sequence[int], channel: str) -> set[int]:
    """As hub.outbox.queue.opted_out, for many customers in one statement."""
    rows = await conn.execute(
        select(consent_t.c.customer_id, consent_t.c.purpose, consent_t.c.state)
        .where(consent_t.c.customer_id.in_(ids))
        .where(consent_t.c.channel == channel)
        .order_by(consent_t.c.recorded_at.desc(), consent_t.c.id.desc())
    )
    newest: dict[tuple[int, str], str] = {}
    for cid, purpose, state in rows:
        newest.setdefault((cid, purpose), state)
    return {cid for (cid, _), state in newest.items() if state == ConsentState.OPTED_OUT.value}


async def _erased_opt_outs(
    conn: AsyncConnection, key: str, kind: str, values: dict[int, str]
) -> set[int]:
    if len(key) < MIN_KEY or not values:
        return set()
    digests = {digest(key, kind, v): cid for cid, v in values.items()}
    rows = await conn.execute(
        select(suppression_t.c.digest)
        .where(suppression_t.c.kind == kind)
        .where(suppression_t.c.digest.in_(list(digests)))
        .where(suppression_t.c.opted_out)
    )
    return {digests[d] for (d,) in rows}


async def sent_this_week(
    conn: AsyncConnection, ids: Sequence[int], channel: str, now: datetime
) -> dict[int, int]:
    """Marketing messages per customer on `channel` queued in the last 7 days
    (sent or still to send; blocked and failed ones reached nobody)."""
    rows = await conn.execute(
        select(outbox_t.c.customer_id, func.count())
        .where(outbox_t.c.customer_id.in_(ids))
        .where(outbox_t.c.channel == channel)
        .where(outbox_t.c.campaign_id.is_not(None))
        .where(outbox_t.c.created_at >= now - WEEK)
        .where(outbox_t.c.status.in_(("queued", "sending", "sent")))
        .group_by(outbox_t.c.customer_id)
    )
    return {cid: int(n) for cid, n in rows}


async def sort_out(
    conn: AsyncConnection,
    ids: Sequence[int],
    channel: str,
    *,
    suppression_key: str,
    max_per_week: int,
    now: datetime,
) -> tuple[list[Recipient], dict[str, int]]:
    """The chunk's recipients (in id order) and the left-out counts by reason."""
    kind = IdentityKind.EMAIL if channel == "email" else IdentityKind.PHONE
    chosen, bounced = await _addresses(conn, ids, kind)
    opted = await _opted_out(conn, ids, channel)
    erased = await _erased_opt_outs(
        conn, suppression_key, "email" if channel == "email" else "phone",
        {cid: value for cid, (_, value) in chosen.items()},
    )  # fmt: skip
    counts = await sent_this_week(conn, ids, channel, now)
    left: dict[str, int] = {}
    recipients = []
    for cid in ids:
        reason = None
        if cid in opted:
            reason = "opted_out"
        elif cid in bounced:
            reason = "bounced"
        elif cid not in chosen:
            reason = "no_address"
        elif cid in erased:
            reason = "erased_opt_out"
        if reason is not None:
            left[reason] = left.get(reason, 0) + 1
            continue
        iid, value = chosen[cid]
        recipients.append(Recipient(cid, iid, value, counts.get(cid, 0) >= max_per_week))
    return recipients, left
