"""What a campaign is made of, as the API and the CLI take it: validated strictly.

A typo is a 422 naming the field (extra="forbid"); a schedule that cannot
happen (a wall-clock time that does not exist in the zone, a cron expression
APScheduler cannot read, an unknown zone) is a 422 before anything is stored.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from pydantic import Field, field_validator, model_validator

from hub.records.schemas import Id, _In

StepKind = Literal["send", "no_reply", "replied", "bounced"]


class StepIn(_In):
    """`send`: the first message. Follow-up rules: `no_reply` sends `template` to
    those who did not reply within `delay_days`; `replied` and `bounced` create a
    task titled `task_title` for the customer's owner (else unassigned, in the team)."""

    kind: StepKind = "send"
    template_id: Id | None = None
    delay_days: float = Field(0, ge=0, le=365)
    task_title: str = Field("", max_length=300)

    @model_validator(mode="after")
    def _complete(self) -> StepIn:
        if self.kind in ("send", "no_reply") and self.template_id is None:
            raise ValueError(f"a {self.kind!r} step needs template_id")
        if self.kind in ("replied", "bounced") and not self.task_title.strip():
            raise ValueError(f"a {self.kind!r} step needs task_title")
        return self


class ScheduleIn(_In):
    """`now`; `at` a date-time (a naive one is wall-clock time in `timezone`); or
    `cron` (five fields, minute hour day month weekday) in `timezone`."""

    kind: Literal["now", "at", "cron"] = "now"
    at: datetime | None = None
    timezone: str = Field("Europe/Berlin", max_length=60)
    cron: str | None = Field(None, max_length=100)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ScheduleIn:
        if self.kind == "at" and self.at is None:
            raise ValueError("schedule 'at' needs at")
        if self.kind == "cron":
            if not self.cron:
                raise ValueError("schedule 'cron' needs cron")
            try:
                CronTrigger.from_crontab(self.cron, timezone=ZoneInfo(self.timezone))
            except ValueError as exc:
                raise ValueError(f"cron: {exc}") from None
        if self.kind == "at" and self.at is not None:
            self.at = local_to_utc(self.at, self.timezone)
        return self


def local_to_utc(at: datetime, zone: str) -> datetime:
    """A naive wall-clock time in `zone` as UTC; a time the clocks skip (DST) is refused,
    a time that happens twice (the hour the clocks go back) is the first of the two."""
    if at.tzinfo is not None:
        return at.astimezone(UTC)
    tz = ZoneInfo(zone)
    local = at.replace(tzinfo=tz, fold=0)
    back = local.astimezone(UTC).astimezone(tz).replace(tzinfo=None)
    if back != at:
        raise ValueError(f"{at.isoformat()} does not exist in {zone} (the clocks skip it)")
    return local.astimezone(UTC)


class CampaignIn(_In):
    name: str = Field(min_length=1, max_length=200)
    channel: Literal["email", "sms"]
    segment_id: Id
    steps: list[StepIn] = Field(min_length=1, max_length=20)
    schedule: ScheduleIn = Field(default_factory=ScheduleIn)
    # Email: the configured mailbox (email.mailboxes name) that sends; default: the first.
    mailbox: str | None = Field(None, max_length=50)
    # Messages per second for this campaign (spread when queued); default: the channel's.
    rate_per_second: float | None = Field(None, gt=0, le=1000)
    # Pause the campaign by itself when more than this share of a run's sends failed.
    failure_threshold: float = Field(0.2, gt=0, le=1)

    @model_validator(mode="after")
    def _first_sends(self) -> CampaignIn:
        if self.steps[0].kind != "send":
            raise ValueError("steps[0] must be a 'send' step (the first message)")
        if sum(1 for s in self.steps if s.kind == "send") != 1:
            raise ValueError("exactly one 'send' step; follow-ups are no_reply/replied/bounced")
        return self


class CampaignPreviewIn(_In):
    customer_id: Id | None = None
