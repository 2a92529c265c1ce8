"""Sends over time: buckets of any width aligned on the epoch (a day is a UTC day), the
hourly series in the stats answer, and `--bucket` refused when it is not 1..10080."""

from __future__ import annotations

import contextlib
import io
from datetime import UTC, datetime

import pytest

from hub.campaigns.stats import bucket_times
from hub.cli.main import main

TIMES = [
    datetime(2026, 12, 5, 9, 5),  # naive, as SQLite hands it back: UTC
    datetime(2026, 12, 5, 9, 59, tzinfo=UTC),
    datetime(2026, 12, 5, 10, 30, tzinfo=UTC),
    datetime(2026, 12, 6, 0, 1, tzinfo=UTC),
]


def test_buckets_of_any_width() -> None:
    assert bucket_times(TIMES, 60) == [
        (datetime(2026, 12, 5, 9, 0, tzinfo=UTC), 2),
        (datetime(2026, 12, 5, 10, 0, tzinfo=UTC), 1),
        (datetime(2026, 12, 6, 0, 0, tzinfo=UTC), 1),
    ]
    assert bucket_times(TIMES, 1440) == [
        (datetime(2026, 12, 5, tzinfo=UTC), 3),
        (datetime(2026, 12, 6, tzinfo=UTC), 1),
    ]
    assert bucket_times(TIMES, 90) == [
        (datetime(2026, 12, 5, 9, 0, tzinfo=UTC), 2),  # 09:00 up to 10:30
        (datetime(2026, 12, 5, 10, 30, tzinfo=UTC), 1),
        (datetime(2026, 12, 6, 0, 0, tzinfo=UTC), 1),
    ]
    assert bucket_times([], 60) == []
    with pytest.raises(ValueError, match="at least 1"):
        bucket_times(TIMES, 0)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [("0", "minutes from 1 to 10080, not 0"), ("x", "not a number of minutes: 'x'")],
)
def test_a_bucket_out_of_range_is_refused(bad: str, reason: str) -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exited:
        main(["campaign", "stats", "1", "--bucket", bad])
    assert exited.value.code == 2
    assert err.getvalue().splitlines()[-1].endswith(f"argument --bucket: {reason}")
