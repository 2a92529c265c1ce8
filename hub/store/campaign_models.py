"""Tables of segments, templates and campaigns (issue 12)."""

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    LargeBinary,
    Table,
    Text,
    Unicode,
)
from sqlmodel import Field, SQLModel

from hub.store.columns import NEVER_REUSE_IDS, UTCDateTime, json_column, timestamp, utcnow


class Segment(SQLModel, table=True):
    """A saved selection of customers: a structured filter (hub/segments/filters.py),
    never SQL text. `team_id`: the team it belongs to (None: every team may use it)."""

    __table_args__ = (NEVER_REUSE_IDS,)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=100)
    filter: dict[str, Any] = json_column(dict)
    team_id: int | None = Field(default=None, foreign_key="team.id", index=True)
    created_by: int | None = Field(default=None, foreign_key="app_user.id", ondelete="SET NULL")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class MessageTemplate(SQLModel, table=True):
    """A named message template; its content lives in versions, one per edit, so a
    campaign that sent version 3 can still show what it sent after version 4."""

    __tablename__ = "message_template"
    __table_args__ = (NEVER_REUSE_IDS,)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=100)
    channel: str = Field(max_length=20)  # "email" or "sms"
    locale: str = Field(default="de", max_length=10)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class MessageTemplateVersion(SQLModel, table=True):
    __tablename__ = "message_template_version"

    template_id: int = Field(
        foreign_key="message_template.id", primary_key=True, ondelete="CASCADE"
    )
    version: int = Field(primary_key=True)
    # Email: subject, html and text; SMS: body. The others stay empty.
    subject: str = Field(default="", sa_type=Text)
    html: str = Field(default="", sa_type=Text)
    text: str = Field(default="", sa_type=Text)
    body: str = Field(default="", sa_type=Text)
    created_by: int | None = Field(default=None, foreign_key="app_user.id", ondelete="SET NULL")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class CampaignStatus(enum.StrEnum):
    DRAFT = "draft"  # made, not scheduled
    SCHEDULED = "scheduled"  # waiting for its time (or its next cron time)
    RUNNING = "running"  # expanding or sending
    PAUSED = "paused"  # by a user, or by itself (failure threshold): paused_reason
    DONE = "done"
    CANCELLED = "cancelled"


class Campaign(SQLModel, table=True):
    """Segment + steps (template, channel) + schedule + sender + rate + follow-ups."""

    __tablename__ = "campaign"
    __table_args__ = (NEVER_REUSE_IDS,)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=200)
    channel: str = Field(max_length=20)  # "email" or "sms"
    segment_id: int = Field(foreign_key="segment.id")
    team_id: int | None = Field(default=None, foreign_key="team.id")
    mailbox: str | None = Field(default=None, max_length=50)  # email: which mailbox sends
    status: str = Field(default=CampaignStatus.DRAFT, max_length=20, index=True)
    paused_reason: str | None = Field(default=None, sa_type=Text)
    schedule_kind: str = Field(default="now", max_length=10)  # now | at | cron
    schedule_at: datetime | None = timestamp()
    timezone: str = Field(default="Europe/Berlin", max_length=60)
    cron: str | None = Field(default=None, max_length=100)
    rate_per_second: float | None = None
    failure_threshold: float = 0.2  # pause when this share of a run's sends failed
    created_by: int | None = Field(default=None, foreign_key="app_user.id", ondelete="SET NULL")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class CampaignStep(SQLModel, table=True):
    """One message of a campaign: the first ("send"), or a follow-up rule:
    "no_reply" (send after `delay_days` without a reply), "replied" (a task for the
    owner), "bounced" (a task for the owner)."""

    __tablename__ = "campaign_step"
    __table_args__ = (NEVER_REUSE_IDS,)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True, ondelete="CASCADE")
    position: int = 0
    kind: str = Field(default="send", max_length=20)
    template_id: int | None = Field(default=None, foreign_key="message_template.id")
    delay_days: float = 0
    task_title: str = Field(default="", max_length=300)


class CampaignRun(SQLModel, table=True):
    """One firing of a campaign (one for "now"/"at", one per cron time), with how far
    its expansion got (resume point after a crash) and what it left out, by reason."""

    __tablename__ = "campaign_run"
    __table_args__ = (NEVER_REUSE_IDS,)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True, ondelete="CASCADE")
    status: str = Field(default="expanding", max_length=20)  # expanding | sending | done
    expanded_through: int = 0  # the last customer id expanded
    audience: int = 0
    queued: int = 0
    suppressed: dict[str, int] = json_column(dict)
    started_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    finished_at: datetime | None = timestamp()


class CampaignTaskMark(SQLModel, table=True):
    """A follow-up task already made for (step, customer): rules fire once each."""

    __tablename__ = "campaign_task_mark"

    step_id: int = Field(foreign_key="campaign_step.id", primary_key=True, ondelete="CASCADE")
    customer_id: int = Field(foreign_key="customer.id", primary_key=True, ondelete="CASCADE")


# APScheduler's job store (hub/campaigns/scheduler.py) on PostgreSQL: its table, in
# APScheduler's own shape, made by our migrations so the schema has one owner.
apscheduler_jobs = Table(
    "apscheduler_jobs",
    SQLModel.metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)
