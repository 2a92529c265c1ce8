"""Thread an inbound contact into a conversation."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from channels.base import Channel, InboundContact, MetaKey
from routing.base import ALL_CHANNELS, Decision, RoutingContext


class ThreadConversation:
    """Join the conversation a reference points to, else the open one of that channel.

    References (Message-IDs, the SID of a message we sent) win over "the open
    conversation" so that a reply lands where the message it answers lives,
    even when the customer has several open conversations (and whatever its
    subject says: the subject is never used for threading).

    Next comes a reply token (the signed conversation id in our Reply-To
    address), for replies whose In-Reply-To and References were stripped. It
    ranks below the references because those name the exact message answered;
    a token only names the conversation the answered mail was sent from. Like
    a reference, it never joins another customer's conversation.

    On channels without references (SMS), `reply_windows` gives a window per
    channel: with no open conversation, a contact joins the conversation of
    the last message we sent that customer within the window, so a reply to
    a campaign lands in the campaign's conversation instead of a new one.
    """

    name = "thread_conversation"
    channels: frozenset[Channel] = ALL_CHANNELS
    description = (
        "reply -> referenced conversation; else the reply token's; else the open one of "
        "the channel; else the one of our last message within the channel's reply window; "
        "else new"
    )

    def __init__(self, reply_windows: Mapping[str, timedelta] | None = None) -> None:
        self.reply_windows = dict(reply_windows or {})

    async def process(
        self, contact: InboundContact, decision: Decision, ctx: RoutingContext
    ) -> None:
        if decision.conversation is not None:
            return
        if contact.thread_refs:
            found = await ctx.conversation_by_provider_ids(
                decision.customer.id, contact.channel.value, contact.thread_refs
            )
            if found is not None and found.id is not None:
                decision.conversation = found
                return
        # Set by the email reader for a valid signed reply-token recipient.
        token = contact.metadata.get(MetaKey.REPLY_TOKEN_CONVERSATION)
        # bool is an int too; a stray True must not mean conversation 1.
        if isinstance(token, int) and not isinstance(token, bool) and token > 0:
            named = await ctx.conversation_of_customer(
                decision.customer.id, token, contact.channel.value
            )
            if named is not None:
                decision.conversation = named
                return
        current = await ctx.open_conversation_of(decision.customer.id, contact.channel.value)
        if current is not None:
            decision.conversation = current
            return
        window = self.reply_windows.get(contact.channel.value)
        if window and not decision.customer.is_new:  # a new lead got nothing from us
            replied_to = await ctx.last_outbound_conversation(
                decision.customer.id,
                contact.channel.value,
                contact.occurred_at - window,
                contact.occurred_at,
            )
            if replied_to is not None:
                decision.conversation = replied_to
                return
        decision.open_conversation = True
        decision.subject = contact.subject
