"""Column types and helpers the model modules share.

Times are stored as UTC and always come back timezone-aware (SQLite keeps no
zone, so `UTCDateTime` restores it); comparing an aware with a naive datetime
would otherwise fail at run time on one backend only.
"""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, TypeDecorator
from sqlalchemy.engine import Dialect
from sqlmodel import Field

# SQLite hands a deleted row's id to the next insert unless the table is
# AUTOINCREMENT; an id that a client, an export or an audit event holds must
# never come to mean another person. (PostgreSQL sequences never reuse ids.)
NEVER_REUSE_IDS = {"sqlite_autoincrement": True}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        # SQLite compares these as text: drop the zone so every row has one form.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def timestamp(*, index: bool = False, nullable: bool = True) -> Any:
    """A UTC timestamp column, None until set."""
    return Field(default=None, sa_type=UTCDateTime, index=index, nullable=nullable)


def json_column(default: Any) -> Any:
    """A JSON column that is never NULL, `default()` when not given."""
    return Field(default_factory=default, sa_column=Column(JSON, nullable=False))
