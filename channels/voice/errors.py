"""The only two exceptions a voice parser raises, whatever it is fed.

The web layer maps them to a status without looking inside: a request that
is not a usable call event is a 400 with the reason, one without valid
credentials a 401/403, and nothing of either is stored.
"""

from __future__ import annotations


class InvalidCallForm(ValueError):
    """The body is not a usable call event; `reason` says why (-> 400)."""

    status = 400

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CallAuthRefused(Exception):
    """No or wrong credentials: 401 when none were presented, 403 when they are wrong
    (or when nothing is configured to check them against)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
