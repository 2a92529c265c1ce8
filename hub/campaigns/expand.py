"""Expansion: a campaign run's audience becomes outbox rows, chunk by chunk.

The segment is streamed in id order (hub/segments: bounded id ranges, never
the whole audience in memory). For each chunk, in one transaction: who may
get it and where (audience.py), the personalisation context, rendering,
then one multi-row insert of the history entries and one of the outbox rows,
and the run's resume point (`expanded_through`) and counters. A crash loses
at most the chunk in progress, and a restart goes on after the last
committed chunk; the unique (run, step, customer) on the outbox is the
backstop that nobody is queued twice.

Messages are rendered here, not when sent: the row then holds exactly what
goes out, so a resend after a crash sends the same bytes under the same
Message-ID, the history shows the text at once, and a template edited
mid-campaign does not change messages already queued.
"""

from __future__ import annotations

import email.utils
import logging
from collections.abc import Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from channels.email.senders import message_id_domain
from hub.campaigns.audience import DEFERRED, Recipient, sort_out
from hub.campaigns.timing import next_allowed, zone_for
from hub.config import Settings
from hub.outbox.queue import MESSAGE_ID, OutboxStatus
from hub.segments.query import stream_ids
from hub.segments.store import segment_filter
from hub.store.db import Database
from hub.store.models import utcnow
from hub.store.tables import (
    campaign_run_t,
    campaign_t,
    customer_t,
    interaction_t,
    outbox_t,
    segment_t,
)
from hub.subscriptions.links import unsubscribe_headers
from hub.templating import TemplateError, recipient_contexts, render
from hub.templating.store import get_template

log = logging.getLogger(__name__)
Progress = Callable[[int], None]  # customers handled in the chunk just committed


@dataclass(frozen=True, slots=True)
class Step:
    id: int
    campaign_id: int
    channel: str
    template_id: int
    mailbox: str | None
    rate_per_second: float | None


def sender_of(settings: Settings, channel: str, mailbox: str | None) -> tuple[str, str | None]:
    """(the From the history shows, the mailbox name that sends) for the campaign."""
    if channel == "email":
        boxes = [m for m in settings.email.mailboxes if m.smtp is not None]
        box = next((m for m in boxes if m.name == mailbox), boxes[0] if boxes else None)
        if box is None:
            raise ValueError("no email mailbox can send (email.mailboxes[].smtp)")
        return box.address, box.name
    return settings.sms.from_number or "", None


async def _context_extra(
    settings: Settings, recipients: Sequence[Recipient], campaign_id: int
) -> dict[int, tuple[str, dict[str, str]]]:
    return {
        r.customer_id: unsubscribe_headers(settings, r.customer_id, r.identity_id, campaign_id)
        for r in recipients
    }


async def expand_chunk(
    conn: AsyncConnection,
    settings: Settings,
    step: Step,
    run_id: int,
    ids: Sequence[int],
    start: datetime,
    slot: int,
) -> tuple[int, dict[str, int]]:
    """Queue the step for `ids`; returns (rows queued, left out by reason)."""
    cfg = settings.campaigns
    now = utcnow()
    recipients, left = await sort_out(
        conn,
        ids,
        step.channel,
        suppression_key=settings.privacy.suppression_key,
        max_per_week=cfg.max_per_week,
        now=now,
    )
    if cfg.over_cap == "skip":
        capped = [r for r in recipients if r.over_cap]
        if capped:
            left["frequency_cap"] = left.get("frequency_cap", 0) + len(capped)
            recipients = [r for r in recipients if not r.over_cap]
    done = set(
        (
            await conn.execute(
                select(outbox_t.c.customer_id)
                .where(outbox_t.c.campaign_run_id == run_id)
                .where(outbox_t.c.campaign_step_id == step.id)
                .where(outbox_t.c.customer_id.in_([r.customer_id for r in recipients]))
            )
        ).scalars()
    )
    recipients = [r for r in recipients if r.customer_id not in done]
    if not recipients:
        return 0, left
    template = await get_template(conn, step.template_id)
    contexts = await recipient_contexts(conn, [r.customer_id for r in recipients])
    countries: dict[int, str | None] = {
        cid: country
        for cid, country in await conn.execute(
            select(customer_t.c.id, customer_t.c.country).where(
                customer_t.c.id.in_([r.customer_id for r in recipients])
            )
        )
    }
    links = (
        await _context_extra(settings, recipients, step.campaign_id)
        if step.channel == "email"
        else {}
    )
    sender, mailbox = sender_of(settings, step.channel, step.mailbox)
    quiet = cfg.quiet_hours.get("sms" if step.channel == "sms" else "email")
    interactions: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for r in recipients:
        context = dict(contexts.get(r.customer_id, {}))
        url, headers = links.get(r.customer_id, ("", {}))
        context["unsubscribe_url"] = url
        try:
            out = render(template.parts, context)
        except TemplateError as exc:
            key = "template_error"
            left[key] = left.get(key, 0) + 1
            log.info("campaign %s: customer %s: %s", step.campaign_id, r.customer_id, exc.reason)
            continue
        due = start
        if step.rate_per_second:
            due = start + timedelta(seconds=(slot + len(rows)) / step.rate_per_second)
        if r.over_cap:  # over_cap "defer": a week on, when all of this week's messages aged out
            due = max(due, now + timedelta(days=7))
            left[DEFERRED + "frequency_cap"] = left.get(DEFERRED + "frequency_cap", 0) + 1
        phone = r.address if step.channel == "sms" else None
        due = next_allowed(
            due, zone_for(phone, countries.get(r.customer_id), cfg.default_timezone), quiet
        )
        meta = {"campaign_id": step.campaign_id, "campaign_step_id": step.id}
        message_id = None
        row_headers: dict[str, str] = {}
        if step.channel == "email":
            message_id = email.utils.make_msgid(domain=message_id_domain(sender))
            row_headers = {MESSAGE_ID: message_id}
        text = out.text if step.channel == "email" else out.body
        interactions.append(
            {
                "customer_id": r.customer_id,
                "conversation_id": None,
                "channel": step.channel,
                "direction": "out",
                "occurred_at": now,
                "subject": out.subject,
                "text": text,
                "provider_id": message_id,
                "sender": sender,
                "recipient": r.address,
                "delivery_status": OutboxStatus.QUEUED.value,
                "meta": meta,
                "author_id": None,
                "created_at": now,
            }
        )
        rows.append(
            {
                "customer_id": r.customer_id,
                "conversation_id": None,
                "channel": step.channel,
                "recipient": r.address,
                "body": text,
                "subject": out.subject,
                "html": out.html or None,
                "headers": row_headers,
                "unsubscribe": (
                    {"url": url, "mailto": _mailto(headers)} if step.channel == "email" else None
                ),
                "mailbox": mailbox,
                "status": OutboxStatus.QUEUED.value,
                "attempts": 0,
                "next_attempt_at": due,
                "campaign_id": step.campaign_id,
                "campaign_step_id": step.id,
                "campaign_run_id": run_id,
                "uncertain": False,
                "created_at": now,
                "updated_at": now,
            }
        )
    if not rows:
        return 0, left
    interaction_ids = (
        (
            await conn.execute(
                insert(interaction_t).returning(interaction_t.c.id, sort_by_parameter_order=True),
                interactions,
            )
        )
        .scalars()
        .all()
    )
    for row, iid in zip(rows, interaction_ids, strict=True):
        row["interaction_id"] = iid
    await conn.execute(insert(outbox_t), rows)
    return len(rows), left


def _mailto(headers: dict[str, str]) -> str:
    """The mailto target of a List-Unsubscribe value ("<https://…>, <mailto:…>")."""
    for part in headers.get("List-Unsubscribe", "").split(","):
        target = part.strip().strip("<>")
        if target.startswith("mailto:"):
            return target
    return ""


async def run_step(
    db: Database,
    settings: Settings,
    step: Step,
    run_id: int,
    progress: Progress | None = None,
) -> None:
    """Expand `step` for run `run_id` from its resume point to the end of the segment."""
    async with db.read() as s:
        conn = await s.connection()
        run = (
            await conn.execute(select(campaign_run_t).where(campaign_run_t.c.id == run_id))
        ).one()
        segment = (
            await conn.execute(
                select(segment_t)
                .join(campaign_t, campaign_t.c.segment_id == segment_t.c.id)
                .where(campaign_t.c.id == step.campaign_id)
            )
        ).one()
    flt = segment_filter(segment)
    start = utcnow()
    slot = run.queued
    after = run.expanded_through
    span = settings.campaigns.chunk
    while True:
        # Each chunk: a fresh read of the next id range, then its own write transaction.
        async with db.read() as s:
            chunk: list[int] = []
            async with aclosing(stream_ids(await s.connection(), flt, None, after=after)) as it:
                async for ids in it:
                    chunk = ids[:span]
                    break
        if not chunk:
            break
        async with db.write() as s:
            conn = await s.connection()
            queued, left = await expand_chunk(conn, settings, step, run_id, chunk, start, slot)
            current = (
                await conn.execute(
                    select(campaign_run_t.c.suppressed).where(campaign_run_t.c.id == run_id)
                )
            ).scalar_one()
            merged = dict(current or {})
            for reason, n in left.items():
                merged[reason] = merged.get(reason, 0) + n
            await conn.execute(
                update(campaign_run_t)
                .where(campaign_run_t.c.id == run_id)
                .values(
                    expanded_through=chunk[-1],
                    audience=campaign_run_t.c.audience + len(chunk),
                    queued=campaign_run_t.c.queued + queued,
                    suppressed=merged,
                )
            )
        slot += queued
        after = chunk[-1]
        if progress is not None:
            progress(len(chunk))
