"""The outbox's pure rules: which delivery status may replace which, and the backoff."""

from __future__ import annotations

import pytest

from channels.email.status import EMAIL_STATUSES
from channels.sms.status import SMS_STATUSES
from hub.outbox.queue import backoff


@pytest.mark.parametrize(
    ("current", "new", "advances"),
    [
        (None, "queued", True),
        ("queued", "queued", False),
        ("queued", "accepted", True),
        ("queued", "sent", True),
        ("sending", "sent", True),
        ("sent", "sending", False),
        ("sent", "delivered", True),
        ("delivered", "sent", False),  # a late "sent" never hides "delivered"
        ("delivered", "read", True),
        ("delivered", "undelivered", True),
        ("sent", "failed", True),
        ("failed", "delivered", False),  # failures are final
        ("undelivered", "failed", False),
        ("blocked", "sent", False),
        ("queued", "blocked", True),
        ("sent", "bogus", False),  # an unknown word changes nothing
    ],
)
def test_status_only_moves_forward(current: str | None, new: str, advances: bool) -> None:
    assert SMS_STATUSES.advances(current, new) is advances


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff(n, 30, 3600) for n in range(1, 10)] == [
        30,
        60,
        120,
        240,
        480,
        960,
        1920,
        3600,
        3600,
    ]


@pytest.mark.parametrize(
    ("current", "new", "advances"),
    [
        ("queued", "sent", True),
        ("sent", "bounced", True),
        ("bounced", "sent", False),
        ("failed", "bounced", False),
        ("sent", "delivered", False),  # not an email word: a relay's 250 is as far as we see
        ("sent", "undelivered", False),
    ],
)
def test_each_channel_orders_statuses_in_its_own_words(
    current: str | None, new: str, advances: bool
) -> None:
    assert EMAIL_STATUSES.advances(current, new) is advances
