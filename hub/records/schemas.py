"""Request bodies of the API, validated with pydantic (unknown fields are errors)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

Text200 = Field(default="", max_length=200)
# Ids in bodies: 32-bit like the database's (a larger one cannot name a row).
Id = Annotated[int, Field(ge=1, le=2**31 - 1)]


def _utc_representable(value: datetime) -> datetime:
    # The drivers store times in UTC: 0001-01-01T00:00+01:00 overflowed at commit (a 500).
    if value.tzinfo is not None:
        try:
            value.astimezone(UTC)
        except OverflowError:
            raise ValueError("must lie within the years 1 to 9999 in UTC") from None
    return value


Time = Annotated[datetime, AfterValidator(_utc_representable)]


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # PostgreSQL text cannot hold NUL; refuse it here rather than fail at commit.
        if _has_nul(value):
            raise ValueError("must not contain NUL characters")
        return value


class CustomerIn(_In):
    kind: Literal["lead", "customer"] = "customer"
    name: str = Text200
    company: str = Text200
    industry: str = Field(default="", max_length=100)
    postal_code: str = Field(default="", max_length=20)
    city: str = Field(default="", max_length=100)
    country: str = Field(default="", max_length=100)
    notes: str = Field(default="", max_length=100_000)
    emails: list[str] = Field(default_factory=list, max_length=50)
    phones: list[str] = Field(default_factory=list, max_length=50)
    tags: list[str] = Field(default_factory=list, max_length=100)
    custom: dict[str, Any] = Field(default_factory=dict)
    owner_id: Id | None = None
    team_id: Id | None = None


class CustomerPatch(_In):
    """Only the fields sent change; `emails`, `phones` and `tags` replace the whole set."""

    kind: Literal["lead", "customer"] | None = None
    name: str | None = Field(default=None, max_length=200)
    company: str | None = Field(default=None, max_length=200)
    industry: str | None = Field(default=None, max_length=100)
    postal_code: str | None = Field(default=None, max_length=20)
    city: str | None = Field(default=None, max_length=100)
    country: str | None = Field(default=None, max_length=100)
    notes: str | None = Field(default=None, max_length=100_000)
    emails: list[str] | None = Field(default=None, max_length=50)
    phones: list[str] | None = Field(default=None, max_length=50)
    tags: list[str] | None = Field(default=None, max_length=100)
    custom: dict[str, Any] | None = None
    owner_id: Id | None = None
    team_id: Id | None = None


class NoteIn(_In):
    text: str = Field(min_length=1, max_length=100_000)


class TaskIn(_In):
    customer_id: Id
    title: str = Field(min_length=1, max_length=300)
    due_at: Time | None = None
    assignee_id: Id | None = None


class TaskPatch(_In):
    title: str | None = Field(default=None, min_length=1, max_length=300)
    due_at: Time | None = None
    assignee_id: Id | None = None
    done: bool | None = None


class ConversationPatch(_In):
    status: Literal["open", "pending", "closed"] | None = None
    assignee_id: Id | None = None


class LoginIn(_In):
    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1000)


class ReplyIn(_In):
    # The channel's own limit (SMS: sms.max_body_chars) is checked when queuing.
    text: str = Field(min_length=1, max_length=100_000)


class ConsentIn(_In):
    """An opt-in or opt-out as the customer gave it, with where it came from."""

    channel: Literal["sms", "email", "phone"]
    purpose: str = Field(default="marketing", min_length=1, max_length=50)
    state: Literal["opted_in", "opted_out"]
    # Where the consent was given: "web form 2026-12", "phone call with agent1", ...
    source: str = Field(min_length=1, max_length=200)


class StatusIn(_In):
    """An agent's presence: "away" takes them out of assignment while connected."""

    status: Literal["available", "away"]
