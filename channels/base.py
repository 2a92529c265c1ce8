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
