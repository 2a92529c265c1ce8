"""The mail loop rule: more than N mails from one sender within M minutes.

Unlike the other mail rules (routing/mail_rules.py) it needs memory — the
recent arrivals of each sender — so it is a small class of its own; the
step that acts on its answer is `EmailLoopGuard` in routing/mail_steps.py.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime, timedelta


class LoopGuard:
    """Counts mails per sender in a sliding window: more than `max_messages` in
    `minutes` is a loop (two auto-responders answering each other, a script
    gone wrong).

    Memory stays bounded whatever the traffic: a sender keeps at most
    `max_messages + 1` timestamps (enough to tell "over the limit"), senders
    with nothing inside the window are forgotten, and beyond `max_senders`
    the least recently seen are dropped (a looping sender is, by definition,
    recently seen).

    A mail counts once: routing the same mail again (a batch rolled back
    and retried contact by contact, an IMAP chunk retried message by
    message) must not push its sender towards the limit. Hits that name the
    mail's provider id (its Message-ID) are remembered by it, and a repeat
    within the window gets the answer the first hit got without counting;
    the last `max_ids` of them are kept, far more than any retry reaches
    back. Hits without a provider id count every time.

    Counting per process is enough for the first version: each IMAP mailbox
    is polled by exactly one node (advisory lock), and a loop runs between
    one outside address and one of our mailboxes, so all its mail passes
    through one process. What is lost is harmless: after a restart or a
    mailbox moving to another node a loop gets `max_messages` more mails in
    before it is caught again, and a sender writing to mailboxes on several
    nodes is counted per node. Shared counting (a database table) is worth
    it only if the hub starts sending automatic answers itself.
    """

    def __init__(
        self, max_messages: int, minutes: int, max_senders: int = 10_000, max_ids: int = 10_000
    ) -> None:
        if max_messages < 1 or minutes < 1 or max_senders < 1 or max_ids < 1:
            raise ValueError("max_messages, minutes, max_senders and max_ids must be at least 1")
        self.max_messages = max_messages
        self.minutes = minutes
        self.window = timedelta(minutes=minutes)
        self.max_senders = max_senders
        self.max_ids = max_ids
        # sender -> timestamps in arrival order; senders ordered by last hit
        self._seen: OrderedDict[str, list[datetime]] = OrderedDict()
        # sender -> (when, for which provider id) its loop was last reported;
        # only senders still in _seen
        self._reported: dict[str, tuple[datetime, str | None]] = {}
        # (sender, provider id) -> (time, count) of counted mails, least recent first
        self._ids: OrderedDict[tuple[str, str], tuple[datetime, int]] = OrderedDict()

    def __len__(self) -> int:
        """Senders tracked right now (for tests and metrics)."""
        return len(self._seen)

    def hit(self, sender: str, at: datetime, provider_id: str | None = None) -> bool:
        """Count one mail from `sender` at `at`; True when the sender is over the limit.

        `at` need not be monotonic (mails are backfilled after an outage), so
        the count is of the recent arrivals within the window ending at `at`.
        A mail with a `provider_id` already counted within the window is not
        counted again: it gets the answer it got the first time.
        """
        return self.hit_count(sender, at, provider_id) > self.max_messages

    def hit_count(self, sender: str, at: datetime, provider_id: str | None = None) -> int:
        """`hit`, answering with the mail's count (over the limit when > max_messages)."""
        key = sender.strip().lower()
        if not provider_id:
            return self._count_hit(key, at)
        id_key = (key, provider_id)
        known = self._ids.pop(id_key, None)
        if known is not None and abs(at - known[0]) < self.window:
            self._ids[id_key] = known  # most recent again
            return known[1]
        counted = self._count_hit(key, at)
        self._ids[id_key] = (at, counted)
        while len(self._ids) > self.max_ids:
            self._ids.popitem(last=False)
        return counted

    def _count_hit(self, key: str, at: datetime) -> int:
        self._forget_stale(at)
        start = at - self.window
        before = self._seen.pop(key, None)
        if not before:  # a first mail in the window (most senders): counts 1
            self._seen[key] = [at]
            while len(self._seen) > self.max_senders:
                self._forget(next(iter(self._seen)))
            return 1
        times = [t for t in before if t > start]
        times.append(at)
        # The newest arrivals are what tells a loop; older ones add nothing.
        del times[: -(self.max_messages + 1)]
        self._seen[key] = times
        while len(self._seen) > self.max_senders:
            self._forget(next(iter(self._seen)))
        # = count(key, at): every kept time is after `start`
        return sum(1 for t in times if t <= at)

    def count(self, sender: str, at: datetime) -> int:
        """Mails of `sender` counted in the window ending at `at` (at most max_messages + 1)."""
        start = at - self.window
        return sum(1 for t in self._seen.get(sender.strip().lower(), ()) if start < t <= at)

    def report_due(self, sender: str, at: datetime, provider_id: str | None = None) -> bool:
        """Whether the loop `hit` just found should be reported now: once per window.

        One report per window, not per mail: a loop delivers hundreds of mails,
        and a warning for each would bury the one line that matters. True
        records the report, so call it only when the report is then made.
        The mail that got the report (by `provider_id`) gets it again when it
        is routed again, since its first routing may have been rolled back.
        """
        key = sender.strip().lower()
        last = self._reported.get(key)
        # abs(): backfilled mail may be older than the last report.
        if last is not None and abs(at - last[0]) < self.window:
            return provider_id is not None and provider_id == last[1]
        self._reported[key] = (at, provider_id)
        return True

    def _forget(self, key: str) -> None:
        del self._seen[key]
        self._reported.pop(key, None)

    def _forget_stale(self, now: datetime) -> None:
        # Entries are ordered by last hit, so stale senders gather at the front.
        limit = now - self.window
        while self._seen:
            key, times = next(iter(self._seen.items()))
            if max(times) > limit:
                break
            self._forget(key)
