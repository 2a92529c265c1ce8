"""Real services the tests start (Dovecot, …): skip locally when one is missing, fail in CI.

A skip for a missing service is counted, and the run ends by saying how many
tests were skipped and the one command that installs what they need.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest

# Service -> the command that installs it on Debian (the machines we run on).
INSTALL = {
    "Dovecot": "apt-get install -y dovecot-imapd",
    "chromium": "apt-get install -y chromium",
}
SKIP_PREFIX = " not available: "


def require_service(name: str, reason: str) -> None:
    """Skip locally when a service is missing; fail in CI, where it must be there."""
    if os.environ.get("CRMHUB_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{name} is required in CI: {reason}")
    pytest.skip(f"{name}{SKIP_PREFIX}{reason}")


def missing_services(skip_reasons: list[str]) -> Counter[str]:
    """How many skips each missing service caused, from the skip messages."""
    found: Counter[str] = Counter()
    for reason in skip_reasons:
        name, sep, _ = reason.removeprefix("Skipped: ").partition(SKIP_PREFIX)
        if sep and name in INSTALL:
            found[name] += 1
    return found


def summary_lines(skip_reasons: list[str]) -> list[str]:
    return [
        f"{count} test(s) skipped: {name} is missing; install it with: {INSTALL[name]}"
        for name, count in sorted(missing_services(skip_reasons).items())
    ]
