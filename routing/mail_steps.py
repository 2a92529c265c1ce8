"""Classify inbound email that no person wrote: bounces, auto-replies, mail loops.

Such mail belongs in the customer's history (an agent should see "out of
office until Monday" or "mailbox full"), but it must never open a
conversation, notify anyone or answer back — answering an auto-responder is
how mail loops start. Each step therefore sets `Decision.record_only` and
`Decision.stop`; what the hub does with those fields is described on
`routing.base.Decision`.

Order (the first match stops the rest, so it matters)::

    email_bounce -> email_autoreply -> email_loop_guard -> thread_conversation ...

A bounce also looks like an auto-reply (null sender, Auto-Submitted), so the
bounce step runs first or its recipient details would be lost; the loop
guard runs after both, since classified mail already triggers nothing.

Metadata keys the email adapter puts into `InboundContact.metadata`
(header values as decoded strings; a missing key or None means "no such
header"; an empty or blank header value counts as absent, except for
`return_path`)::

    auto_submitted             Auto-Submitted (RFC 3834)
    precedence                 Precedence
    x_autoreply                X-Autoreply
    x_auto_response_suppress   X-Auto-Response-Suppress (Exchange/Outlook)
    return_path                Return-Path address; "" for the null sender <>
    content_type               the top-level media type, e.g. "multipart/report"
    is_dsn                     bool: multipart/report; report-type=delivery-status
    dsn_text                   the message/delivery-status part as text (DSNs only)
    dsn_original_headers       dict of the returned original headers, lower-case
                               names, incl. "message-id" (DSNs only, may be absent)

`InboundContact.sender` is the From address (with or without display name).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from typing import Any

from channels.base import Channel, InboundContact
from routing.base import Decision, RoutingContext
from routing.dsn import BounceInfo, parse_dsn, parse_plain_bounce

log = logging.getLogger(__name__)

BULK_PRECEDENCE = frozenset({"bulk", "junk", "list"})
# Decision.meta keys the hub acts on (hub/ingest/batch.py, hub/ingest/pipeline.py).
BOUNCED_INTERACTION_KEY = "bounced_interaction_id"
MAIL_LOOP_KEY = "mail_loop"
DAEMON_LOCALPARTS = frozenset({"mailer-daemon", "postmaster"})


def _header(contact: InboundContact, key: str) -> str | None:
    value = contact.metadata.get(key)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _address(raw: str) -> str:
    return parseaddr(raw)[1].strip().lower() or raw.strip().lower()


def autoreply_reason(contact: InboundContact) -> str | None:
    """Why this email was sent by a program rather than a person, or None.

    Public so the hub can explain a classification (and tests can check the
    header matrix) without running a step.
    """
    auto_submitted = _header(contact, "auto_submitted")
    if auto_submitted is not None:
        # "auto-replied; owner-email=..." -> "auto-replied"
        keyword = auto_submitted.split(";", 1)[0].strip().lower()
        if keyword != "no":
            return f"auto-submitted: {keyword}"
    precedence = _header(contact, "precedence")
    if precedence is not None and precedence.lower() in BULK_PRECEDENCE:
        return f"precedence: {precedence.lower()}"
    x_autoreply = _header(contact, "x_autoreply")
    if x_autoreply is not None:
        return f"x-autoreply: {x_autoreply}"
    suppress = _header(contact, "x_auto_response_suppress")
    if suppress is not None:
        return f"x-auto-response-suppress: {suppress}"
    return_path = contact.metadata.get("return_path")
    if return_path is not None and str(return_path).strip() in ("", "<>"):
        return "null sender"
    if contact.metadata.get("is_dsn"):
        # Only reached when the bounce step is not configured: a DSN is
        # machine mail all the same and must not open a conversation.
        return "delivery status notification"
    return None


class EmailAutoreply:
    """RFC 3834 and the de-facto headers: recorded, but opens nothing and answers nothing."""

    name = "email_autoreply"
    description = (
        "Auto-Submitted != no, Precedence bulk/junk/list, X-Autoreply, "
        "X-Auto-Response-Suppress or null sender -> record only"
    )

    async def process(
        self, contact: InboundContact, decision: Decision, ctx: RoutingContext
    ) -> None:
        if contact.channel is not Channel.EMAIL:
            return
        reason = autoreply_reason(contact)
        if reason is None:
            return
        decision.record_only = True
        decision.stop = True
        decision.meta["auto_reply"] = reason


def _original_message_id(headers: Any) -> str | None:
    if not isinstance(headers, Mapping):
        return None
    for key, value in headers.items():
        if str(key).strip().lower() == "message-id" and value is not None:
            # Bracketed like the email adapter's provider ids, so the hub can
            # look it up among the Message-IDs it sent without normalising.
            bare = "".join(str(value).split()).strip("<>")
            return f"<{bare}>" if bare else None
    return None


def bounce_of(contact: InboundContact) -> BounceInfo | None:
    """The bounce this email reports, or None when it is not a bounce.

    A multipart/report is trusted as a report. A mail from MAILER-DAEMON or
    postmaster without one counts only when its body reads like a delivery
    report (RFC 3464 fields, or a status code after an address): postmasters
    also write ordinary mail, which must reach an agent.
    """
    if contact.channel is not Channel.EMAIL:
        return None
    is_dsn = bool(contact.metadata.get("is_dsn"))
    if not is_dsn and _address(contact.sender).split("@", 1)[0] not in DAEMON_LOCALPARTS:
        return None
    text = str(contact.metadata.get("dsn_text") or "") or contact.text
    recipients = parse_dsn(text) or parse_plain_bounce(contact.text)
    if not recipients and not is_dsn:
        return None
    message_id = _original_message_id(contact.metadata.get("dsn_original_headers"))
    return BounceInfo(message_id, tuple(recipients))


class EmailBounce:
    """Delivery status notifications -> `Decision.bounce`, recorded only.

    When the report returns the Message-ID of a message we sent, the bounce
    belongs to the customer we sent it to: it goes into that customer's
    history (not a new lead for MAILER-DAEMON), and the bounced interaction's
    id goes into `meta[BOUNCED_INTERACTION_KEY]` for the hub to mark it.
    Otherwise it stays with the sender, as any unknown mail does.

    A DSN whose report cannot be read is still a bounce (with no recipients):
    it is recorded for an agent to look at, but it must not open a
    conversation either.
    """

    name = "email_bounce"
    description = "multipart/report delivery-status or MAILER-DAEMON report -> bounce, record only"

    async def process(
        self, contact: InboundContact, decision: Decision, ctx: RoutingContext
    ) -> None:
        bounce = bounce_of(contact)
        if bounce is None:
            return
        decision.bounce = bounce
        decision.record_only = True
        decision.stop = True
        decision.meta["bounce"] = bounce.summary() or "unreadable delivery report"
        if bounce.original_message_id is None:
            return
        sent = await ctx.sent_message(contact.channel.value, bounce.original_message_id)
        if sent is None:
            return
        decision.customer = sent.customer
        decision.team_id = sent.customer.team_id
        decision.meta[BOUNCED_INTERACTION_KEY] = sent.interaction_id


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
        times = [t for t in self._seen.pop(key, []) if t > start]
        times.append(at)
        # The newest arrivals are what tells a loop; older ones add nothing.
        del times[: -(self.max_messages + 1)]
        self._seen[key] = times
        while len(self._seen) > self.max_senders:
            self._forget(next(iter(self._seen)))
        return self.count(key, at)

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


class EmailLoopGuard:
    """A sender over the loop limit is recorded only and marked `meta["throttled"]`.

    The first such mail of a window also gets `meta[MAIL_LOOP_KEY]` (count
    and limits): the hub reports the loop once for it, after the commit —
    logging here would warn for every mail and before anything is stored.
    A mail routed again (its batch rolled back and retried) is not counted
    again and gets the same decision, the report included; should the
    retry never come, that window's report is lost (like the counts, this
    state is per process and best effort), the throttling goes on, and the
    next window reports again.
    """

    name = "email_loop_guard"
    description = "more than N mails from one sender in M minutes -> record only, throttled"

    def __init__(
        self,
        max_messages: int = 20,
        minutes: int = 10,
        max_senders: int = 10_000,
        clock: Callable[[], datetime] | None = None,
        max_ids: int = 10_000,
    ) -> None:
        self.guard = LoopGuard(max_messages, minutes, max_senders, max_ids)
        self._clock = clock or (lambda: datetime.now(UTC))

    async def process(
        self, contact: InboundContact, decision: Decision, ctx: RoutingContext
    ) -> None:
        if contact.channel is not Channel.EMAIL:
            return
        # The mail's own time counts, so a backlog fetched after an outage is
        # not mistaken for a burst; capped at now so a future Date header
        # cannot pin a sender's window.
        at = min(contact.occurred_at, self._clock())
        sender = _address(contact.sender)
        counted = self.guard.hit_count(sender, at, contact.provider_id)
        if counted <= self.guard.max_messages:
            return
        decision.record_only = True
        decision.stop = True
        decision.meta["throttled"] = True
        if self.guard.report_due(sender, at, contact.provider_id):
            decision.meta[MAIL_LOOP_KEY] = {
                "count": counted,
                "max_messages": self.guard.max_messages,
                "minutes": self.guard.minutes,
            }
        log.debug("mail from %s throttled: suspected mail loop", sender)
