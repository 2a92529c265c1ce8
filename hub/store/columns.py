"""Column types and helpers the model modules share.

Times are stored as UTC and always come back timezone-aware (SQLite keeps no
zone, so `UTCDateTime` restores it); comparing an aware with a naive datetime
would otherwise fail at run time on one backend only.
"""

from collections.abc import Callable
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


# Datetime -> its SQLite text, shared by every UTCDateTime bind processor: a batch
# binds a contact's time to several statements (each has its own processor).
_SQLITE_TEXT: dict[datetime, str] = {}


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

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        """On SQLite, `process_bind_param` and the dialect's text formatting in one step,
        remembering the last few thousand values' text (for all of them together).

        The stock pair (a TypeDecorator call, then DATETIME's `%`-formatting of a
        dict, ~2 us on our VM) was ~12 % of the ingest writer's time, and a
        batch binds the same times several times (a contact's `occurred_at` for
        its interaction, its customer's and its conversation's last activity;
        the batch's `now` in every row). This gives exactly the same text:
        equal datetimes are the same instant (aware) or the same fields (naive),
        and so have the same UTC text. Anything but a plain datetime goes the
        stock way, and should the dialect's storage format ever differ, the
        stock processor is used.
        """
        stock = super().bind_processor(dialect)
        if dialect.name != "sqlite" or stock is None:
            return stock
        fmt = "%04d-%02d-%02d %02d:%02d:%02d.%06d"
        memo = _SQLITE_TEXT

        def process(value: Any) -> Any:
            if type(value) is not datetime:
                return stock(value)
            text = memo.get(value)
            if text is not None:
                return text
            utc = value
            tz = value.tzinfo
            if tz is not None and tz is not UTC:
                utc = value.astimezone(UTC)
            text = fmt % (
                utc.year,
                utc.month,
                utc.day,
                utc.hour,
                utc.minute,
                utc.second,
                utc.microsecond,
            )
            if len(memo) >= 4096:
                memo.clear()
            memo[value] = text
            return text

        probes = (datetime(2026, 12, 5, 20, 1, 2, 345, tzinfo=UTC), datetime(1, 1, 1))
        if any(process(v) != stock(v) for v in probes):
            return stock
        return process

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
