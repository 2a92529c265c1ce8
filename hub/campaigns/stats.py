"""What a campaign did, per step: read from the outbox, the history and consent.

Nothing is counted twice or kept in counters that could drift: every figure
is a query over the rows themselves (the outbox rows of the campaign, their
history entries, the consent rows an unsubscribe link wrote), except what
expansion left out or held back, which only the runs know (`campaign_run.suppressed`;
its "deferred:<reason>" keys are messages queued for later, e.g. a week on for
the frequency cap with over_cap "defer": they are in `deferred`, not `suppressed`).

- queued / sending / sent / failed / blocked: the outbox rows' status
  (blocked: opted out between queueing and sending, or the campaign cancelled);
- uncertain: rows that were in flight at a crash (sent again or skipped,
  outbox.in_flight_after_crash) — the only ones that may have arrived twice;
- bounced, delivered: the history entries' delivery status (DSNs for email,
  Twilio's callbacks for SMS; bounced includes SMS "failed" and "undelivered");
- replied: customers who wrote in (any channel) after the message;
- unsubscribed: opt-outs recorded from this campaign's links (or its mailto).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import distinct, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.campaigns.audience import DEFERRED
from hub.campaigns.followups import FAILED_DELIVERY
from hub.campaigns.followups import replied as replied_after
from hub.store.tables import (
    campaign_run_t,
    campaign_step_t,
    consent_t,
    interaction_t,
    outbox_t,
)

STATUSES = ("queued", "sending", "sent", "failed", "blocked")


async def campaign_stats(conn: AsyncConnection, campaign_id: int) -> dict[str, Any]:
    runs = list(
        await conn.execute(
            select(campaign_run_t)
            .where(campaign_run_t.c.campaign_id == campaign_id)
            .order_by(campaign_run_t.c.id)
        )
    )
    suppressed: dict[str, int] = {}
    deferred: dict[str, int] = {}
    for run in runs:
        for key, n in (run.suppressed or {}).items():
            into, reason = (
                (deferred, key[len(DEFERRED) :]) if key.startswith(DEFERRED) else (suppressed, key)
            )
            into[reason] = into.get(reason, 0) + int(n)
    steps = list(
        await conn.execute(
            select(campaign_step_t.c.id, campaign_step_t.c.kind)
            .where(campaign_step_t.c.campaign_id == campaign_id)
            .order_by(campaign_step_t.c.position)
        )
    )
    per_step = []
    for step in steps:
        rows = outbox_t.c.campaign_step_id == step.id
        by_status = {
            status: int(n)
            for status, n in await conn.execute(
                select(outbox_t.c.status, func.count()).where(rows).group_by(outbox_t.c.status)
            )
        }
        uncertain = int(
            (
                await conn.execute(select(func.count()).where(rows).where(outbox_t.c.uncertain))
            ).scalar_one()
        )
        delivery = {
            status: int(n)
            for status, n in await conn.execute(
                select(interaction_t.c.delivery_status, func.count())
                .join(outbox_t, outbox_t.c.interaction_id == interaction_t.c.id)
                .where(rows)
                .group_by(interaction_t.c.delivery_status)
            )
        }
        replied = int(
            (
                await conn.execute(
                    select(func.count(distinct(outbox_t.c.customer_id)))
                    .where(rows)
                    .where(outbox_t.c.status == "sent")
                    .where(replied_after())
                )
            ).scalar_one()
        )
        per_step.append(
            {
                "step_id": step.id,
                "kind": step.kind,
                **{status: by_status.get(status, 0) for status in STATUSES},
                "uncertain": uncertain,
                # An SMS the carrier could not deliver counts as bounced, as the
                # `bounced` follow-up rule sees it (followups.FAILED_DELIVERY).
                "bounced": sum(delivery.get(d, 0) for d in FAILED_DELIVERY),
                "delivered": delivery.get("delivered", 0),
                "replied": replied,
            }
        )
    unsubscribed = int(
        (
            await conn.execute(
                select(func.count(distinct(consent_t.c.customer_id)))
                .where(consent_t.c.state == "opted_out")
                .where(consent_t.c.source.like(f"%, campaign {campaign_id}"))
            )
        ).scalar_one()
    )
    totals = {
        key: sum(s[key] for s in per_step)
        for key in (*STATUSES, "uncertain", "bounced", "delivered")
    }
    return {
        "campaign_id": campaign_id,
        "runs": len(runs),
        "audience": sum(r.audience for r in runs),
        "suppressed": dict(sorted(suppressed.items())),
        "deferred": dict(sorted(deferred.items())),
        **totals,
        "replied": per_step[0]["replied"] if per_step else 0,
        "unsubscribed": unsubscribed,
        "steps": per_step,
        # Sends per hour (UTC), for a chart; `crmhub campaign stats --bucket` for others.
        "over_time": [
            {"at": at.isoformat(), "sent": n}
            for at, n in await sent_over_time(conn, campaign_id, 60)
        ],
    }


async def sent_over_time(
    conn: AsyncConnection, campaign_id: int, bucket_minutes: int = 60
) -> list[tuple[datetime, int]]:
    """Messages sent per time bucket (by the outbox row's last update), for the chart."""
    rows = await conn.execute(
        select(outbox_t.c.updated_at)
        .where(outbox_t.c.campaign_id == campaign_id)
        .where(outbox_t.c.status == "sent")
        .order_by(outbox_t.c.updated_at)
    )
    return bucket_times((at for (at,) in rows), bucket_minutes)


def bucket_times(times: Iterable[datetime], bucket_minutes: int) -> list[tuple[datetime, int]]:
    """Count `times` per bucket of `bucket_minutes`, buckets aligned on the Unix epoch
    (so a day is midnight to midnight UTC and 90 minutes works too); UTC, oldest first."""
    if bucket_minutes < 1:
        raise ValueError("bucket_minutes must be at least 1")
    width = bucket_minutes * 60
    buckets: dict[datetime, int] = {}
    for at in times:
        aware = at if at.tzinfo else at.replace(tzinfo=UTC)  # SQLite hands back naive UTC
        start = int(aware.timestamp()) // width * width
        key = datetime.fromtimestamp(start, UTC)
        buckets[key] = buckets.get(key, 0) + 1
    return sorted(buckets.items())


def svg_chart(points: list[tuple[datetime, int]], title: str) -> str:
    """A small bar chart of `points` as a standalone SVG (no library, no script)."""
    width, height, pad = 640, 240, 30
    top = max((n for _, n in points), default=0) or 1
    bar = (width - 2 * pad) / max(len(points), 1)
    bars = []
    for i, (at, n) in enumerate(points):
        h = (height - 2 * pad) * n / top
        x, y = pad + i * bar, height - pad - h
        bars.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(bar - 2, 1):.1f}" height="{h:.1f}" '
            f'fill="#0b57d0"><title>{at.isoformat()}: {n}</title></rect>'
        )
    safe = title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">'
        f'<text x="{pad}" y="18">{safe} (max {top} per bucket)</text>'
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
        f'stroke="#5f6b7a"/>' + "".join(bars) + "</svg>\n"
    )
