"""Plain data shared by adapters, routing and the hub.

Adapters translate raw input into `InboundContact` and `OutboundMessage` into
the wire; nothing here knows about storage, so every adapter and routing step
can be tested with plain values.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol


class Channel(enum.StrEnum):
    EMAIL = "email"
    SMS = "sms"
    PHONE = "phone"
    NOTE = "note"


class Direction(enum.StrEnum):
    IN = "in"
    OUT = "out"


@dataclass(frozen=True, slots=True)
class AttachmentRef:
    """An attachment as the channel saw it; content lives elsewhere (disk, provider URL)."""

    filename: str
    content_type: str
    size: int | None = None
    url: str | None = None
    sha256: str | None = None


@dataclass(frozen=True, slots=True)
class InboundContact:
    """One normalised inbound contact, whatever channel it came on.

    `sender` is the raw address as received (an email address with display
    name, a phone number in any format); the hub normalises it.
    `provider_id` (Message-ID, MessageSid, CallSid) makes ingest idempotent.
    """

    channel: Channel
    sender: str
    recipient: str = ""
    text: str = ""
    subject: str = ""
    provider_id: str | None = None
    thread_refs: tuple[str, ...] = ()
    occurred_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    metadata: Mapping[str, Any] = field(default_factory=dict)
    attachments: tuple[AttachmentRef, ...] = ()
    sender_name: str = ""


class MetaKey(enum.StrEnum):
    """The keys channel adapters put into `InboundContact.metadata`, named once.

    Routing reads them and the hub stores them with the interaction (JSON, so
    a member is stored as its plain string value). A key is set only by the
    channel named in its comment; a missing key or None means "not known".
    Header values are decoded strings; an empty or blank header value counts
    as absent for routing's rules, except for `RETURN_PATH`.
    """

    # email (channels/email/parse.py): the body
    FULL_TEXT = "full_text"  # the whole readable body (`text` is its new part)
    QUOTED_TEXT = "quoted_text"  # the quoted part of it
    # email: headers routing classifies by
    AUTO_SUBMITTED = "auto_submitted"  # Auto-Submitted (RFC 3834)
    PRECEDENCE = "precedence"  # Precedence
    X_AUTOREPLY = "x_autoreply"  # X-Autoreply
    X_AUTO_RESPONSE_SUPPRESS = "x_auto_response_suppress"  # Exchange/Outlook
    RETURN_PATH = "return_path"  # envelope sender; "" for the null sender <>
    LIST_ID = "list_id"  # List-Id
    LIST_UNSUBSCRIBE = "list_unsubscribe"  # List-Unsubscribe
    # email: the structure
    CONTENT_TYPE = "content_type"  # top-level media type, e.g. "multipart/report"
    IS_DSN = "is_dsn"  # bool: multipart/report; report-type=delivery-status
    DSN_TEXT = "dsn_text"  # (DSNs only) the message/delivery-status part as text
    # (DSNs only) the returned original's headers, lower-case names incl.
    # "message-id", or None
    DSN_ORIGINAL_HEADERS = "dsn_original_headers"
    TO = "to"  # list of addresses
    CC = "cc"  # list of addresses
    REPLY_TO = "reply_to"  # list of addresses
    SKIPPED_ATTACHMENTS = "skipped_attachments"  # (when any) over the size limit, not stored
    PARSE_DEFECTS = "parse_defects"  # sorted names of what was wrong with the message
    # email read from a mailbox (channels/email/inbound.py): where it came from
    MAILBOX = "mailbox"  # the configured mailbox's name
    FOLDER = "folder"
    UID = "uid"
    # email: the conversation id a valid signed reply-token recipient names
    # (channels/email/reply_token.py)
    REPLY_TOKEN_CONVERSATION = "reply_token_conversation"
    # sms (channels/sms/inbound.py): every Twilio parameter not mapped to a
    # contact field, nested so a new one can never collide with another key
    TWILIO = "twilio"


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    channel: Channel
    recipient: str
    text: str
    subject: str = ""
    sender: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)


class DeliveryState(enum.StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    TEMPORARY_FAILURE = "temporary_failure"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    state: DeliveryState
    provider_id: str | None = None
    error_code: str | None = None
    error: str | None = None


InboundSink = Callable[[InboundContact], Awaitable[Any]]


class ChannelAdapter(Protocol):
    """The contract every channel package implements (checked by mypy, not by names)."""

    channel: Channel
    max_body_length: int
    rate_per_second: float

    def parse(self, raw: Any) -> Sequence[InboundContact]: ...

    async def send(self, message: OutboundMessage) -> DeliveryResult: ...
