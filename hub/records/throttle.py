"""Login throttling: growing delays per username and per client address.

After `free` failures, each further attempt must wait 1 s, 2 s, 4 s, ... (up
to `max_delay`) after the previous failure; an attempt that comes earlier is
refused with the seconds to wait (429 + Retry-After), without checking the
password, so guessing costs the attacker time and us no scrypt work. A
success clears the username's count. Kept in memory per node: a restart
forgets, and with several nodes each counts its own (documented).
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(slots=True)
class _Failures:
    count: int = 0
    last: float = 0.0


class LoginThrottle:
    def __init__(
        self, *, free: int, free_per_address: int, max_delay: float, size: int = 100_000
    ) -> None:
        self.free = free
        self.free_per_address = free_per_address
        self.max_delay = max_delay
        self.size = size  # entries kept at most: a flood of names must not grow memory
        self._users: dict[str, _Failures] = {}
        self._addresses: dict[str, _Failures] = {}

    def _delay(self, failures: _Failures | None, free: int) -> float:
        if failures is None or failures.count < free:
            return 0.0
        return float(min(self.max_delay, 2.0 ** (failures.count - free)))

    def wait(self, username: str, address: str, now: float | None = None) -> float:
        """Seconds this attempt must still wait (0: go ahead)."""
        now = time.monotonic() if now is None else now
        waits = []
        for table, key, free in (
            (self._users, username.lower(), self.free),
            (self._addresses, address, self.free_per_address),
        ):
            failures = table.get(key)
            delay = self._delay(failures, free)
            if failures is not None and delay:
                waits.append(failures.last + delay - now)
        return max([0.0, *waits])

    def failed(self, username: str, address: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for table, key in ((self._users, username.lower()), (self._addresses, address)):
            if key not in table and len(table) >= self.size:
                table.pop(next(iter(table)))  # the oldest entry
            entry = table.setdefault(key, _Failures())
            entry.count += 1
            entry.last = now

    def succeeded(self, username: str) -> None:
        self._users.pop(username.lower(), None)
