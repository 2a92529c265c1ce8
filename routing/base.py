"""The routing contract: a `Decision` filled in by an ordered list of `Step`s."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypedDict

from channels.base import Channel, InboundContact
from routing.dsn import BounceInfo

# What a step that declares no channels applies to.
ALL_CHANNELS: frozenset[Channel] = frozenset(Channel)


class DecisionKey(enum.StrEnum):
    """The keys of `Decision.meta` that built-in steps write and the hub reads.

    `Decision.meta` is stored with the interaction (merged over the contact's
    metadata), so these are also the names an agent or an export sees.
    A step of one's own may add keys of its own; these are the shared ones.
    """

    KEYWORD = "keyword"  # sms_keywords: the SMS keyword that matched, upper case
    AUTO_REPLY = "auto_reply"  # email_autoreply: why the mail counts as machine-sent
    BOUNCE = "bounce"  # email_bounce: the report's summary
    # email_bounce: the id of our interaction the bounce returns (the hub marks it)
    BOUNCED_INTERACTION = "bounced_interaction_id"
    # hub, on a bounce: why it changed nothing (no matching sent message, ...)
    BOUNCE_IGNORED = "bounce_ignored"
    THROTTLED = "throttled"  # email_loop_guard: True for mail over the loop limit
    # email_loop_guard: a `MailLoopReport` on the first throttled mail of a
    # window; the hub reports the loop once for it, after the commit
    MAIL_LOOP = "mail_loop"
    # email_unsubscribe: True for mail to the List-Unsubscribe mailto: address
    UNSUBSCRIBE = "unsubscribe"


class MailLoopReport(TypedDict):
    """`Decision.meta[DecisionKey.MAIL_LOOP]`: how many mails, against which limits."""

    count: int
    max_messages: int
    minutes: int


@dataclass(frozen=True, slots=True)
class CustomerRef:
    id: int
    team_id: int | None
    owner_id: int | None
    is_new: bool


@dataclass(frozen=True, slots=True)
class ConversationRef:
    id: int
    assignee_id: int | None
    team_id: int | None


@dataclass(frozen=True, slots=True)
class SentMessage:
    """A message we sent (an outbound interaction), found by its provider id."""

    interaction_id: int
    customer: CustomerRef
    conversation: ConversationRef | None


@dataclass(frozen=True, slots=True)
class ConsentChange:
    """A consent the contact itself expressed (an SMS "STOP", an unsubscribe reply)."""

    channel: str
    state: str  # "opted_in" or "opted_out"
    source: str  # why, for the record: "sms keyword STOP"
    purpose: str = "marketing"


@dataclass(slots=True)
class Decision:
    """What should happen to one contact; steps refine it in order.

    `conversation` is an existing conversation to append to; when it is None
    and `open_conversation` is set, the hub opens a new one with `subject`.
    """

    customer: CustomerRef
    conversation: ConversationRef | None = None
    open_conversation: bool = False
    subject: str = ""
    assignee_id: int | None = None
    team_id: int | None = None
    # A step may stop the rest (e.g. an auto-reply that must trigger nothing).
    stop: bool = False
    # Recorded with the interaction, in the same transaction.
    consent: ConsentChange | None = None
    # An immediate answer on the same channel (TwiML for SMS); kept in the
    # interaction's metadata so a provider retry gets the very same answer.
    reply: str | None = None
    # Added to the interaction's metadata (e.g. which keyword matched); the
    # shared keys are `DecisionKey` members.
    meta: dict[str, Any] = field(default_factory=dict)
    # Store the contact in the history, but open or join no conversation,
    # assign nobody and trigger nothing (auto-replies, bounces, mail loops).
    record_only: bool = False
    # A delivery status notification about a message we sent (routing/dsn.py).
    bounce: BounceInfo | None = None


class RoutingContext(Protocol):
    """Questions a step may ask; the hub answers them from its storage."""

    async def open_conversation_of(
        self, customer_id: int, channel: str
    ) -> ConversationRef | None: ...

    async def conversation_by_provider_ids(
        self, customer_id: int, channel: str, provider_ids: tuple[str, ...]
    ) -> ConversationRef | None:
        """The conversation of the newest referenced message, if it is this customer's.

        Someone else's conversation is never joined: quoting a Message-ID must
        not put a message into another customer's (or team's) conversation.
        """
        ...

    async def last_outbound_conversation(
        self, customer_id: int, channel: str, since: datetime, until: datetime
    ) -> ConversationRef | None:
        """The conversation of the newest message we sent this customer on `channel`
        between `since` and `until` (a campaign SMS a reply may answer)."""
        ...

    async def sent_message(self, channel: str, provider_id: str) -> SentMessage | None:
        """The outbound interaction with this provider id (our own Message-ID), if any.

        A bounce names the message it returns; whoever we sent that to is the
        customer the bounce belongs to, whoever the report comes from.
        """
        ...

    async def conversation_of_customer(
        self, customer_id: int, conversation_id: int, channel: str
    ) -> ConversationRef | None:
        """That conversation, in any status, only if it is this customer's on `channel`.

        For ids that arrive from outside (a reply-token address): like a
        quoted Message-ID, an id must never join another customer's conversation.
        """
        ...


class Step(Protocol):
    """One small named routing step (the pipelines in config list them by `name`).

    A built-in step also declares `channels`, the channels it applies to, and
    is registered with them in routing/registry.py, which is what lets a
    pipeline listing it under another channel fail at start. It still
    checks the contact's channel itself, so running it alone (tests, a
    step of one's own that calls it) can never apply it to the wrong channel.
    """

    name: str
    description: str

    async def process(
        self, contact: InboundContact, decision: Decision, ctx: RoutingContext
    ) -> None: ...


async def run_steps(
    steps: Sequence[Step], contact: InboundContact, decision: Decision, ctx: RoutingContext
) -> Decision:
    for step in steps:
        if decision.stop:
            break
        await step.process(contact, decision, ctx)
    return decision
