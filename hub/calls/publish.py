"""A stored call step on the bus: its call event, and the call-back task it opened.

A call's history entry has no `interaction.created` of its own: its call
events carry the entry's ids (`interaction_id`, `conversation_id`,
`created_customer`) and go to the agents the call concerns (README, "The
event stream"), instead of a frame to every member of the customer's team.
"""

from __future__ import annotations

from channels.base import CallEvent
from hub.calls.callbacks import CALLBACK_TITLE
from hub.calls.group import Outcome
from hub.events.bus import EventBus
from hub.events.kinds import EventKind, call_event, task_created
from hub.events.pops import CARDS
from routing.calls import CallState

KINDS = {
    CallState.ANSWERED: EventKind.CALL_ANSWERED,
    CallState.ENDED: EventKind.CALL_ENDED,
    CallState.MISSED: EventKind.CALL_MISSED,
    CallState.RINGING: EventKind.CALL_RINGING,
}


def publish_step(bus: EventBus, event: CallEvent, out: Outcome) -> None:
    after, before = out.after, out.before
    if after is None:
        return
    if before is None or after.state is not before.state:
        step = call_event(
            KINDS[after.state],
            call_id=event.call_id,
            provider=event.provider.value,
            from_number=event.from_number,
            to_number=event.to_number,
            direction=event.direction.value,
            customer_id=out.customer_id,
            ringing_user_ids=out.ringing_ids,
            audience=out.audience,
            team_id=out.team_id,
            answered_by_user_id=out.answered_id,
            answered_by=after.answered_by,
            cause=after.cause,
            interaction_id=out.interaction_id,
            conversation_id=out.conversation_id,
            created_customer=out.created_customer,
        )
        if out.cards is not None and after.state is CallState.RINGING:
            step.cache[CARDS] = out.cards
        bus.publish(step)
    if out.task_id is not None and out.customer_id is not None:
        bus.publish(
            task_created(
                task_id=out.task_id,
                customer_id=out.customer_id,
                assignee_id=out.task_assignee,
                title=CALLBACK_TITLE,
                team_id=out.team_id,
            )
        )
