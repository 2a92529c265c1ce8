"""Every event kind the hub publishes, and the one constructor that builds each.

A kind's payload is defined here once, so the pipeline, the outbox and the
websocket that forwards events (and the console reading them) agree on its
keys; publish sites call these constructors, never `Event(...)` with a string.
"""

from __future__ import annotations

import enum

from channels.base import Direction
from hub.events.bus import OVERFLOW_KIND, Event


class EventKind(enum.StrEnum):
    INTERACTION_CREATED = "interaction.created"
    INTERACTION_DELIVERY = "interaction.delivery"
    MAIL_LOOP = "mail.loop"
    CALL_RINGING = "call.ringing"
    CALL_ANSWERED = "call.answered"
    CALL_ENDED = "call.ended"
    CALL_MISSED = "call.missed"
    TASK_CREATED = "task.created"
    TASK_DUE = "task.due"
    CONVERSATION_ASSIGNED = "conversation.assigned"
    CONSENT_CHANGED = "consent.changed"
    BUS_OVERFLOW = OVERFLOW_KIND


def interaction_created(
    *,
    interaction_id: int,
    customer_id: int,
    conversation_id: int | None,
    channel: str,
    direction: Direction,
    sender: str,
    recipient: str,
    subject: str,
    team_id: int | None,
    delivery_status: str | None = None,
    created_customer: bool = False,
) -> Event:
    """A new entry in a customer's history, inbound or outbound: one shape for both,
    so a console renders an agent's reply and the customer's answer alike.

    `sender` of an inbound contact is its normalised identity (E.164, lower-case
    address); `created_customer` says the contact made a new lead.
    """
    return Event(
        EventKind.INTERACTION_CREATED,
        {
            "interaction_id": interaction_id,
            "customer_id": customer_id,
            "conversation_id": conversation_id,
            "channel": channel,
            "direction": direction.value,
            "sender": sender,
            "recipient": recipient,
            "subject": subject,
            "delivery_status": delivery_status,
            "created_customer": created_customer,
        },
        team_id=team_id,
    )


def interaction_delivery(
    *,
    interaction_id: int,
    customer_id: int,
    conversation_id: int | None,
    delivery_status: str,
    error_code: str | None,
    team_id: int | None,
) -> Event:
    """A sent message moved on (sent, delivered, failed, bounced): the console updates its mark."""
    return Event(
        EventKind.INTERACTION_DELIVERY,
        {
            "interaction_id": interaction_id,
            "customer_id": customer_id,
            "conversation_id": conversation_id,
            "delivery_status": delivery_status,
            "error_code": error_code,
        },
        team_id=team_id,
    )


def mail_loop(*, sender: str, customer_id: int, count: int | None, team_id: int | None) -> Event:
    """A sender passed the loop guard's limit; its further mail is recorded only."""
    return Event(
        EventKind.MAIL_LOOP,
        {"sender": sender, "customer_id": customer_id, "count": count},
        team_id=team_id,
    )


def call_event(
    kind: EventKind,
    *,
    call_id: str,
    provider: str,
    from_number: str,
    to_number: str,
    direction: str,
    customer_id: int | None,
    ringing_user_ids: list[int],
    audience: frozenset[int],
    team_id: int | None,
    answered_by_user_id: int | None = None,
    answered_by: str | None = None,
    cause: str | None = None,
    interaction_id: int | None = None,
    conversation_id: int | None = None,
    created_customer: bool = False,
) -> Event:
    """A call's step, sent to `audience` only: the agents it rings at (the pop on
    ringing; on answered the same agents, so every other pop closes).

    A call's history entry is announced by these events, not by an
    `interaction.created` to the whole team: `interaction_id` and
    `conversation_id` name it (None for a withheld number, logged on the call
    only), `created_customer` says the call made a new lead."""
    return Event(
        kind,
        {
            "call_id": call_id,
            "provider": provider,
            "from": from_number,
            "to": to_number,
            "direction": direction,
            "customer_id": customer_id,
            "ringing_user_ids": ringing_user_ids,
            "answered_user_id": answered_by_user_id,
            "answered_by": answered_by,
            "cause": cause,
            "interaction_id": interaction_id,
            "conversation_id": conversation_id,
            "created_customer": created_customer,
        },
        team_id=team_id,
        users=audience,
    )


def task_created(
    *, task_id: int, customer_id: int, assignee_id: int | None, title: str, team_id: int | None
) -> Event:
    return Event(
        EventKind.TASK_CREATED,
        {
            "task_id": task_id,
            "customer_id": customer_id,
            "assignee_id": assignee_id,
            "title": title,
        },
        team_id=team_id,
    )


def conversation_assigned(
    *, conversation_id: int, customer_id: int, assignee_id: int | None, team_id: int | None
) -> Event:
    """A conversation's assignee changed (a supervisor's reassignment; None: unassigned)."""
    return Event(
        EventKind.CONVERSATION_ASSIGNED,
        {
            "conversation_id": conversation_id,
            "customer_id": customer_id,
            "assignee_id": assignee_id,
        },
        team_id=team_id,
    )


def consent_changed(
    *, customer_id: int, channel: str, purpose: str, state: str, source: str, team_id: int | None
) -> Event:
    """An opt-in or opt-out was recorded (an unsubscribe link, a confirmed sign-up)."""
    return Event(
        EventKind.CONSENT_CHANGED,
        {
            "customer_id": customer_id,
            "channel": channel,
            "purpose": purpose,
            "state": state,
            "source": source,
        },
        team_id=team_id,
    )


def task_due(*, task_id: int, customer_id: int, assignee_id: int, title: str, due_at: str) -> Event:
    """A task reached its due time: a reminder for its assignee only."""
    return Event(
        EventKind.TASK_DUE,
        {"task_id": task_id, "customer_id": customer_id, "title": title, "due_at": due_at},
        users=frozenset({assignee_id}),
    )
