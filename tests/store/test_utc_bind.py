"""UTCDateTime's SQLite bind processor: exactly the text the stock pair produced."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import TypeDecorator
from sqlalchemy.dialects.postgresql.asyncpg import dialect as pg_dialect
from sqlalchemy.dialects.sqlite.aiosqlite import dialect as sqlite_dialect

from hub.store.columns import UTCDateTime

ZONES = [
    None,
    UTC,
    timezone(timedelta(hours=2)),
    timezone(timedelta(hours=-5, minutes=-30)),
    ZoneInfo("Europe/Berlin"),
    ZoneInfo("UTC"),
]


def _processors() -> tuple[Any, Any]:
    dialect = sqlite_dialect()
    impl = UTCDateTime().dialect_impl(dialect)
    fast = impl.bind_processor(dialect)
    stock = TypeDecorator.bind_processor(impl, dialect)
    return fast, stock


def test_same_text_as_the_stock_processors() -> None:
    fast, stock = _processors()
    assert fast is not stock and callable(fast) and callable(stock)
    rnd = random.Random(13)
    values = []
    for _ in range(5000):
        values.append(
            datetime(
                rnd.randint(1, 9999),
                rnd.randint(1, 12),
                rnd.randint(1, 28),
                rnd.randint(0, 23),
                rnd.randint(0, 59),
                rnd.randint(0, 59),
                rnd.choice([0, rnd.randint(0, 999_999)]),
                tzinfo=rnd.choice(ZONES),
                fold=rnd.randint(0, 1),
            )
        )
    # Equal instants in other zones and naive twins, after the memo has seen one of them.
    base = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
    values += [base, base.astimezone(ZoneInfo("Europe/Berlin")), base.replace(tzinfo=None)]
    values += [base + timedelta(hours=h) for h in range(5)]
    values += [v.astimezone(ZoneInfo("Europe/Berlin")) for v in values[-5:]]
    checked = 0
    for value in values + values[::-1]:
        try:
            expected = stock(value)
        except OverflowError:  # year 1 / 9999 shifted out of range: both refuse it
            with pytest.raises(OverflowError):
                fast(value)
            continue
        assert fast(value) == expected, value
        checked += 1
    assert checked > 9000
    assert fast(None) is None


def test_other_values_go_the_stock_way() -> None:
    fast, _stock = _processors()
    with pytest.raises(AttributeError):
        fast(date(2026, 1, 2))


def test_other_dialects_keep_the_stock_processor() -> None:
    dialect = pg_dialect()
    impl = UTCDateTime().dialect_impl(dialect)
    assert impl.bind_processor(dialect) is not None
    assert getattr(impl.bind_processor(dialect), "__qualname__", "").startswith("TypeDecorator")
