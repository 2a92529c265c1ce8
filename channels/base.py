"""Plain data shared by adapters, routing and the hub.

Adapters translate raw input into `InboundContact` and `OutboundMessage` into
the wire; nothing here knows about storage, so every adapter and routing step
can be tested with plain values.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
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


class Sender(Protocol):
    """What the outbox needs of a channel: its send, its limits, and a close for its pools.

    The dispatcher enforces the limits; the adapter only declares them.
    """

    channel: Channel
    max_body_length: int
    rate_per_second: float

    @property
    def sender(self) -> str: ...

    async def send(self, message: OutboundMessage) -> DeliveryResult: ...

    async def close(self) -> None: ...


# The hub's own delivery words, the same on every channel: a message waits
# (queued), a provider took it (sent), it failed, or consent blocked it.
HUB_RANKS: Mapping[str, int] = {"queued": 0, "sent": 2}
HUB_FINAL = frozenset({"failed", "blocked"})


@dataclass(frozen=True, slots=True)
class StatusVocabulary:
    """A channel's delivery statuses in its provider's words, and how far each got.

    The core orders and classifies statuses only through this, so no provider's
    status names or error codes are spelled outside its channel package. A
    status never moves backwards (callbacks arrive out of order: a late "sent"
    must not hide "delivered"), and a final one never changes.
    """

    # Provider statuses by how far the message got, on top of the hub's own.
    ranks: Mapping[str, int] = field(default_factory=dict)
    # Statuses after which nothing changes; `failed` ones also fail the outbox row.
    final: frozenset[str] = frozenset()
    failed: frozenset[str] = frozenset()
    # Provider error codes meaning the recipient opted out at the provider;
    # recorded as an opt-out with the source "<provider> <code>".
    opt_out_errors: frozenset[str] = frozenset()
    provider: str = ""

    @property
    def all_final(self) -> frozenset[str]:
        return self.final | HUB_FINAL

    @property
    def all_failed(self) -> frozenset[str]:
        return self.failed | {"failed"}

    def advances(self, current: str | None, new: str) -> bool:
        """Whether `new` may replace `current`."""
        if current in self.all_final:
            return False
        if new in self.all_final:
            return True
        ranks = {**HUB_RANKS, **self.ranks}
        if new not in ranks:
            return False
        return current is None or ranks[new] > ranks.get(current, -1)


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """A provider's word on a message we sent (a status callback), as plain data."""

    channel: Channel
    provider_id: str
    status: str  # in the provider's words, lower-case; ordered by the channel's vocabulary
    error_code: str | None = None
    # Our outbox id when the callback carries it, so a report that overtakes our
    # own record of the provider id still matches.
    outbox_id: int | None = None


# -- webhooks: raw HTTP in, plain data out, without any web framework here --


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """What a provider posted, as the web layer received it."""

    path_qs: str
    content_type: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    # The POST parameters of a form body (empty for other content types).
    form: Mapping[str, str]
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class WebhookParsed:
    """What a webhook carried: contacts to ingest, delivery reports to apply, call events."""

    contacts: tuple[InboundContact, ...] = ()
    reports: tuple[DeliveryReport, ...] = ()
    # Telephony events (channels/voice/); the hub's reply for each is the
    # newline-separated dial targets it chose (used by Twilio's TwiML).
    calls: tuple[CallEvent, ...] = ()
    # An answer already decided by the parse (a PBX reject, sipgate's callback
    # URLs), sent after the commit instead of `Webhook.answer(...)`.
    answer: WebhookAnswer | None = None


@dataclass(frozen=True, slots=True)
class WebhookAnswer:
    status: int = 200
    body: str = ""
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class WebhookFields:
    """What a webhook reads, as JSON schemas, for the API description: the route
    fuzzer generates requests from it, so a parser is fuzzed past its signature."""

    # Form field -> JSON schema (values arrive as strings).
    form: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    # Query parameter -> JSON schema (e.g. our own id in a callback URL).
    query: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


class WebhookRejected(Exception):
    """The request is refused with `status` and a one-line `detail`; nothing is stored."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class Webhook(Protocol):
    """One provider endpoint: verify and parse a request, then answer after the commit."""

    @property
    def path(self) -> str: ...

    # One line for the API description.
    @property
    def summary(self) -> str: ...

    @property
    def fields(self) -> WebhookFields: ...

    def parse(self, request: WebhookRequest) -> WebhookParsed:
        """Verify (signature, token) before reading any field; raise WebhookRejected."""
        ...

    def answer(self, replies: Sequence[str | None]) -> WebhookAnswer:
        """The response once everything parsed is committed; `replies` are the texts
        routing chose to answer each contact with (e.g. a STOP confirmation)."""
        ...


# -- calls: what a telephony adapter (channels/voice/) turns a webhook into --


class CallProvider(enum.StrEnum):
    """Where a call event came from; with the call id it keys the call."""

    TWILIO = "twilio"
    SIPGATE = "sipgate"
    PBX = "pbx"


class CallEventKind(enum.StrEnum):
    NEW_CALL = "new_call"  # the call rings (again: duplicates are normal)
    ANSWER = "answer"  # someone took it
    HANGUP = "hangup"  # it ended, answered or not


class CallCause(enum.StrEnum):
    """Why a call ended, in the hub's words; each adapter maps its provider's words.

    Whether an ended call was missed is the hub's decision (was it answered?);
    the cause only says how it ended. The provider's own word stays in metadata.
    """

    NORMAL = "normal"  # hung up after talking, or the caller gave up (provider can't tell)
    BUSY = "busy"
    CANCEL = "cancel"  # the caller hung up before anyone answered
    NO_ANSWER = "no_answer"
    CONGESTION = "congestion"  # network or provider failure
    NOT_FOUND = "not_found"  # the number called does not exist
    FORWARDED = "forwarded"  # diverted elsewhere (sipgate)
    FAILED = "failed"  # could not be placed (Twilio "failed")
    OTHER = "other"  # a word this adapter does not know yet


@dataclass(frozen=True, slots=True)
class CallEvent:
    """One thing a PBX or voice provider said about a call, as plain data.

    Numbers are raw as the provider sent them ("4930…", "0049…", "anonymous");
    the hub normalises them. `users` are the provider's own ids of the agents
    the call rings at, and `answered_by` the one who took it, mapped to crmhub
    users by the hub.
    """

    provider: CallProvider
    call_id: str
    kind: CallEventKind
    from_number: str = ""
    to_number: str = ""
    direction: Direction = Direction.IN
    users: tuple[str, ...] = ()
    answered_by: str | None = None
    cause: CallCause | None = None  # set on HANGUP only
    occurred_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    # The PBX queue (hunt group) the call came through, as the PBX names it ("" none);
    # config maps queue names to teams (whose online agents a call that names nobody pops for).
    queue: str = ""
    # Every field the provider sent, as received (lists for repeated keys).
    metadata: Mapping[str, Any] = field(default_factory=dict)


# The call's length in seconds as the provider reported it (an int), in `CallEvent.metadata`.
CALL_DURATION_KEY = "duration_seconds"
