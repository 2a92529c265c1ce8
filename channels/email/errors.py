"""Why a message cannot be read: the reason the quarantine records with the raw bytes."""

from __future__ import annotations


class UnparseableEmail(ValueError):
    """The bytes are not a usable email; the message says why (the quarantine keeps them raw)."""


class LimitExceeded(UnparseableEmail):
    """The message is over one of the configured limits (`email.limits`).

    Raised before the expensive work that the limit guards, so a hostile
    message costs a scan of its bytes, not the parse it was built to break.
    """
