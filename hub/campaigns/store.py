"""Campaigns in the database: create, read, and the status changes users make.

Who may: marketing, supervisors and admins write campaigns (as segments); a
campaign belongs to its segment's team, and a user sees the campaigns of
shared segments and of their teams. Status moves:

    draft --schedule--> scheduled --(its time)--> running --> done
                        scheduled/running <--pause/resume--> paused
    any but done --cancel--> cancelled (its queued messages are never sent)

A cron campaign goes back to `scheduled` after each run.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.campaigns.schemas import CampaignIn, ScheduleIn
from hub.config import Settings
from hub.errors import Conflict, Invalid, NotFound
from hub.outbox.queue import OutboxStatus
from hub.records.auth import Principal
from hub.segments.store import get_segment, require_writer
from hub.store.campaign_models import CampaignStatus
from hub.store.models import utcnow
from hub.store.tables import campaign_run_t, campaign_step_t, campaign_t, outbox_t
from hub.templating.store import get_template

c = campaign_t.c
OPEN = (CampaignStatus.SCHEDULED.value, CampaignStatus.RUNNING.value)


def visible(principal: Principal | None) -> ColumnElement[bool]:
    if principal is None or principal.is_admin:
        return true()
    return or_(c.team_id.is_(None), c.team_id.in_(sorted(principal.team_ids)))


def check_sendable(settings: Settings, channel: str) -> None:
    """Marketing email needs a way out in every message (RFC 8058): refuse to make one
    that the sender would fail for want of List-Unsubscribe targets."""
    if channel != "email":
        return
    sub = settings.subscriptions
    missing = []
    if len(sub.token_key) < 16:
        missing.append("subscriptions.token_key (16+ characters)")
    if not sub.unsubscribe_address:
        missing.append("subscriptions.unsubscribe_address (the List-Unsubscribe mailto)")
    if not (settings.server.public_url or "").startswith("https://"):
        missing.append("server.public_url (https://, for the one-click link)")
    if missing:
        raise Invalid("email campaigns need " + ", ".join(missing))


async def create_campaign(
    conn: AsyncConnection, principal: Principal, settings: Settings, data: CampaignIn
) -> int:
    require_writer(principal)
    check_sendable(settings, data.channel)
    segment = await get_segment(conn, principal, data.segment_id)
    for n, step in enumerate(data.steps):
        if step.template_id is not None:
            template = await get_template(conn, step.template_id)
            if template.channel != data.channel:
                raise Invalid(
                    f"steps[{n}].template_id: template {template.id} is for "
                    f"{template.channel}, the campaign sends {data.channel}"
                )
    if data.mailbox is not None and data.channel == "email":
        names = [m.name for m in settings.email.mailboxes if m.smtp is not None]
        if data.mailbox not in names:
            raise Invalid(f"mailbox: {data.mailbox!r} is not a mailbox that sends ({names})")
    if (await conn.execute(select(c.id).where(c.name == data.name))).first() is not None:
        raise Conflict(f"a campaign named {data.name!r} exists")
    now = utcnow()
    campaign_id = int(
        (
            await conn.execute(
                campaign_t.insert()
                .values(
                    name=data.name,
                    channel=data.channel,
                    segment_id=segment.id,
                    team_id=segment.team_id,
                    mailbox=data.mailbox,
                    status=CampaignStatus.DRAFT.value,
                    schedule_kind=data.schedule.kind,
                    schedule_at=data.schedule.at,
                    timezone=data.schedule.timezone,
                    cron=data.schedule.cron,
                    rate_per_second=data.rate_per_second,
                    failure_threshold=data.failure_threshold,
                    created_by=principal.user_id or None,  # 0: the CLI (the system)
                    created_at=now,
                    updated_at=now,
                )
                .returning(c.id)
            )
        ).scalar_one()
    )
    await conn.execute(
        campaign_step_t.insert(),
        [
            {
                "campaign_id": campaign_id,
                "position": n,
                "kind": step.kind,
                "template_id": step.template_id,
                "delay_days": step.delay_days,
                "task_title": step.task_title.strip(),
            }
            for n, step in enumerate(data.steps)
        ],
    )
    return campaign_id


async def get_campaign(conn: AsyncConnection, principal: Principal | None, campaign_id: int) -> Any:
    row = (
        await conn.execute(select(campaign_t).where(c.id == campaign_id).where(visible(principal)))
    ).first()
    if row is None:
        raise NotFound(f"no campaign {campaign_id}")
    return row


async def steps_of(conn: AsyncConnection, campaign_id: int) -> list[Any]:
    return list(
        await conn.execute(
            select(campaign_step_t)
            .where(campaign_step_t.c.campaign_id == campaign_id)
            .order_by(campaign_step_t.c.position)
        )
    )


async def list_campaigns(conn: AsyncConnection, principal: Principal | None) -> list[Any]:
    return list(await conn.execute(select(campaign_t).where(visible(principal)).order_by(c.id)))


def as_json(row: Any, steps: list[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "channel": row.channel,
        "segment_id": row.segment_id,
        "team_id": row.team_id,
        "mailbox": row.mailbox,
        "status": row.status,
        "paused_reason": row.paused_reason,
        "schedule": {
            "kind": row.schedule_kind,
            "at": row.schedule_at.isoformat() if row.schedule_at else None,
            "timezone": row.timezone,
            "cron": row.cron,
        },
        "rate_per_second": row.rate_per_second,
        "failure_threshold": row.failure_threshold,
        "steps": [
            {
                "id": s.id,
                "kind": s.kind,
                "template_id": s.template_id,
                "delay_days": s.delay_days,
                "task_title": s.task_title,
            }
            for s in steps
        ],
        "created_at": row.created_at.isoformat(),
    }


async def set_status(
    conn: AsyncConnection,
    principal: Principal | None,
    campaign_id: int,
    action: str,
    schedule: ScheduleIn | None = None,
) -> Any:
    """schedule | pause | resume | cancel; 409 when the campaign's status does not allow it."""
    if principal is not None:
        require_writer(principal)
    row = await get_campaign(conn, principal, campaign_id)
    status = CampaignStatus(row.status)
    values: dict[str, Any] = {"updated_at": utcnow()}
    if action == "schedule":
        if status not in (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED):
            raise Conflict(f"campaign {campaign_id} is {status.value}; only a draft is scheduled")
        values["status"] = CampaignStatus.SCHEDULED.value
        if schedule is not None:
            values.update(
                schedule_kind=schedule.kind,
                schedule_at=schedule.at,
                timezone=schedule.timezone,
                cron=schedule.cron,
            )
    elif action == "pause":
        if status.value not in OPEN:
            raise Conflict(f"campaign {campaign_id} is {status.value}; nothing to pause")
        values.update(status=CampaignStatus.PAUSED.value, paused_reason="paused by a user")
    elif action == "resume":
        if status is not CampaignStatus.PAUSED:
            raise Conflict(f"campaign {campaign_id} is {status.value}, not paused")
        started = (
            await conn.execute(
                select(campaign_run_t.c.id).where(campaign_run_t.c.campaign_id == campaign_id)
            )
        ).first()
        again = CampaignStatus.RUNNING if started is not None else CampaignStatus.SCHEDULED
        values.update(status=again.value, paused_reason=None)
    elif action == "cancel":
        if status in (CampaignStatus.DONE, CampaignStatus.CANCELLED):
            raise Conflict(f"campaign {campaign_id} is {status.value} already")
        values["status"] = CampaignStatus.CANCELLED.value
        # Its queued messages never go out; the history says why.
        await conn.execute(
            update(outbox_t)
            .where(outbox_t.c.campaign_id == campaign_id)
            .where(outbox_t.c.status == OutboxStatus.QUEUED.value)
            .values(status=OutboxStatus.BLOCKED.value, last_error="campaign cancelled")
        )
    else:
        raise Invalid(f"unknown action {action!r}")
    await conn.execute(update(campaign_t).where(c.id == campaign_id).values(**values))
    return await get_campaign(conn, principal, campaign_id)
