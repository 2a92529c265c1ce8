"""Thread an inbound contact into a conversation."""

from __future__ import annotations

from channels.base import InboundContact
from routing.base import Decision, RoutingContext


class ThreadConversation:
    """Join the conversation a reference points to, else the open one of that channel.

    References (Message-IDs, the SID of a message we sent) win over "the open
    conversation" so that a reply lands where the message it answers lives,
    even when the customer has several open conversations.
    """

    name = "thread_conversation"
    description = "reply -> referenced conversation; else the open one of the channel; else new"

    async def process(
        self, contact: InboundContact, decision: Decision, ctx: RoutingContext
    ) -> None:
        if decision.conversation is not None:
            return
        if contact.thread_refs:
            found = await ctx.conversation_by_provider_ids(
                contact.channel.value, contact.thread_refs
            )
            if found is not None and found.id is not None:
                decision.conversation = found
                return
        current = await ctx.open_conversation_of(decision.customer.id, contact.channel.value)
        if current is not None:
            decision.conversation = current
            return
        decision.open_conversation = True
        decision.subject = contact.subject
