"""The steps that act on inbound email no person wrote: bounces, auto-replies, mail loops.

Such mail belongs in the customer's history (an agent should see "out of
office until Monday" or "mailbox full"), but it must never open a
conversation, notify anyone or answer back — answering an auto-responder is
how mail loops start. Each step therefore sets `Decision.record_only` and
`Decision.stop`; what the hub does with those fields is described on
`routing.base.Decision`. Whether a mail is such mail is decided by the
rules in routing/mail_rules.py and routing/loop_guard.py; these steps only
turn an answer into a decision.

Order in the email pipeline (the first match stops the rest, so it matters)::

    email_bounce -> email_autoreply -> email_loop_guard -> thread_conversation ...

A bounce also looks like an auto-reply (null sender, Auto-Submitted), so the
bounce step runs first or its recipient details would be lost; the loop
guard runs after both, since classified mail already triggers nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from channels.base import Channel, InboundContact
from routing.base import Decision, DecisionKey, MailLoopReport, RoutingContext
from routing.loop_guard import LoopGuard
from routing.mail_rules import autoreply_reason, bounce_of, sender_address

log = logging.getLogger(__name__)

EMAIL_ONLY = frozenset({Channel.EMAIL})


class EmailAutoreply:
    """RFC 3834 and the de-facto headers: recorded, but opens nothing and answers nothing."""

    name = "email_autoreply"
    channels = EMAIL_ONLY
    description = (
        "Auto-Submitted != no, Precedence bulk/junk/list, X-Autoreply, "
        "X-Auto-Response-Suppress or null sender -> record only"
    )

    async def process(
        self, contact: InboundContact, decision: Decision, ctx: RoutingContext
    ) -> None:
        if contact.channel not in self.channels:  # run alone, outside its pipeline
            return
        reason = autoreply_reason(contact)
        if reason is None:
            return
        decision.record_only = True
        decision.stop = True
        decision.meta[DecisionKey.AUTO_REPLY] = reason


class EmailBounce:
    """Delivery status notifications -> `Decision.bounce`, recorded only.

    When the report returns the Message-ID of a message we sent, the bounce
    belongs to the customer we sent it to: it goes into that customer's
    history (not a new lead for MAILER-DAEMON), and the bounced interaction's
    id goes into `meta[DecisionKey.BOUNCED_INTERACTION]` for the hub to mark it.
    Otherwise it stays with the sender, as any unknown mail does.

    A DSN whose report cannot be read is still a bounce (with no recipients):
    it is recorded for an agent to look at, but it must not open a
    conversation either.
    """

    name = "email_bounce"
    channels = EMAIL_ONLY
    description = "multipart/report delivery-status or MAILER-DAEMON report -> bounce, record only"

    async def process(
        self, contact: InboundContact, decision: Decision, ctx: RoutingContext
    ) -> None:
        bounce = bounce_of(contact)  # None on other channels, too
        if bounce is None:
            return
        decision.bounce = bounce
        decision.record_only = True
        decision.stop = True
        decision.meta[DecisionKey.BOUNCE] = bounce.summary() or "unreadable delivery report"
        if bounce.original_message_id is None:
            return
        sent = await ctx.sent_message(contact.channel.value, bounce.original_message_id)
        if sent is None:
            return
        decision.customer = sent.customer
        decision.team_id = sent.customer.team_id
        decision.meta[DecisionKey.BOUNCED_INTERACTION] = sent.interaction_id


class EmailLoopGuard:
    """A sender over the loop limit is recorded only and marked `meta[DecisionKey.THROTTLED]`.

    The first such mail of a window also gets `meta[DecisionKey.MAIL_LOOP]`
    (a `MailLoopReport`): the hub reports the loop once for it, after the commit —
    logging here would warn for every mail and before anything is stored.
    A mail routed again (its batch rolled back and retried) is not counted
    again and gets the same decision, the report included; should the
    retry never come, that window's report is lost (like the counts, this
    state is per process and best effort), the throttling goes on, and the
    next window reports again.
    """

    name = "email_loop_guard"
    channels = EMAIL_ONLY
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
        if contact.channel not in self.channels:  # run alone, outside its pipeline
            return
        # The mail's own time counts, so a backlog fetched after an outage is
        # not mistaken for a burst; capped at now so a future Date header
        # cannot pin a sender's window.
        at = min(contact.occurred_at, self._clock())
        sender = sender_address(contact.sender)
        counted = self.guard.hit_count(sender, at, contact.provider_id)
        if counted <= self.guard.max_messages:
            return
        decision.record_only = True
        decision.stop = True
        decision.meta[DecisionKey.THROTTLED] = True
        if self.guard.report_due(sender, at, contact.provider_id):
            report: MailLoopReport = {
                "count": counted,
                "max_messages": self.guard.max_messages,
                "minutes": self.guard.minutes,
            }
            decision.meta[DecisionKey.MAIL_LOOP] = report
        log.debug("mail from %s throttled: suspected mail loop", sender)
