"""Email's delivery words: a relay's 250 means sent; a bounce (DSN) coming back is final."""

from __future__ import annotations

from channels.base import StatusVocabulary

BOUNCED = "bounced"

EMAIL_STATUSES = StatusVocabulary(final=frozenset({BOUNCED}), failed=frozenset({BOUNCED}))
