"""What a stored contact announces on the event bus: the new interaction, the events
routing collected, a suspected mail loop, a conversation it opened with an assignee.

Called by the ingest writer after the commit, so every event names what is in the
history.
"""

from __future__ import annotations

import logging

from channels.base import Channel, Direction
from hub.events.bus import EventBus
from hub.events.kinds import conversation_assigned, interaction_created, mail_loop
from hub.ingest.context import Prepared
from routing.base import DecisionKey, MailLoopReport

log = logging.getLogger(__name__)


def announce(bus: EventBus, prepared: Prepared) -> None:
    """A stored (not duplicate) contact's events on the bus, after its commit."""
    result = prepared.result
    assert result is not None
    contact = prepared.contact
    bus.publish(
        interaction_created(
            interaction_id=result.interaction_id,
            customer_id=result.customer_id,
            conversation_id=result.conversation_id,
            channel=contact.channel.value,
            direction=Direction.IN,
            sender=prepared.identity.value,
            recipient=contact.recipient,
            subject=contact.subject,
            created_customer=result.created_customer,
            team_id=result.team_id,
        )
    )
    for event in prepared.events:
        bus.publish(event)
    _report_mail_loop(bus, prepared)
    _report_assigned(bus, prepared)


def _report_mail_loop(bus: EventBus, prepared: Prepared) -> None:
    """A mail loop the loop guard flagged: one warning and one event per sender and window.

    After the commit, so a report always names mail that is in the history.
    The guard marks only the first throttled mail of a window (routing/mail_steps.py).
    """
    decision, result = prepared.decision, prepared.result
    loop: MailLoopReport | None = (
        decision.meta.get(DecisionKey.MAIL_LOOP) if decision is not None else None
    )
    if not isinstance(loop, dict) or result is None:
        return
    sender = prepared.identity.value
    log.warning(
        "mail loop suspected: %s sent more than %s mails in %s minutes; "
        "further mail from it is recorded only (customer %s)",
        sender,
        loop.get("max_messages"),
        loop.get("minutes"),
        result.customer_id,
    )
    bus.publish(
        mail_loop(
            sender=sender,
            customer_id=result.customer_id,
            count=loop.get("count"),
            team_id=result.team_id,
        )
    )


def _report_assigned(bus: EventBus, prepared: Prepared) -> None:
    """A conversation this contact opened, with an assignee: its console learns of it.

    Email and SMS only (what hub/calls/assign.py assigns): a call's conversation
    goes to the owner as before, and the call's own events tell whom it rang."""
    decision, result = prepared.decision, prepared.result
    if (
        prepared.contact.channel not in (Channel.EMAIL, Channel.SMS)
        or decision is None
        or result is None
        or not decision.open_conversation
        or decision.conversation is None
        or decision.conversation.id >= 0  # joined one that existed (placeholders are < 0)
        or result.conversation_id is None
        or decision.assignee_id is None
    ):
        return
    bus.publish(
        conversation_assigned(
            conversation_id=result.conversation_id,
            customer_id=result.customer_id,
            assignee_id=decision.assignee_id,
            team_id=decision.team_id,
        )
    )
