"""The storage model. Later features add their tables through new migrations; the
campaign tables are in hub/store/campaign_models.py, the column types both share
in hub/store/columns.py.
"""

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Index,
    LargeBinary,
    Text,
    UniqueConstraint,
    text,
)
from sqlmodel import Field, SQLModel

from hub.store import campaign_models as campaign_models  # registers the campaign tables too
from hub.store import columns
from hub.store.columns import NEVER_REUSE_IDS, json_column, timestamp

# Re-exported: most modules import these two from here.
utcnow = columns.utcnow
UTCDateTime = columns.UTCDateTime


class CustomerKind(enum.StrEnum):
    LEAD = "lead"
    CUSTOMER = "customer"


class IdentityKind(enum.StrEnum):
    EMAIL = "email"
    PHONE = "phone"


class ConversationStatus(enum.StrEnum):
    OPEN = "open"
    PENDING = "pending"
    CLOSED = "closed"


class Role(enum.StrEnum):
    ADMIN = "admin"
    SUPERVISOR = "supervisor"
    AGENT = "agent"
    MARKETING = "marketing"


class ConsentState(enum.StrEnum):
    OPTED_IN = "opted_in"
    OPTED_OUT = "opted_out"


class Team(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=100)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class User(SQLModel, table=True):
    __tablename__ = "app_user"  # "user" is reserved in PostgreSQL

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(unique=True, max_length=100)
    display_name: str = ""
    role: str = Field(default=Role.AGENT, max_length=20)
    phone_extension: str | None = Field(default=None, index=True, max_length=20)
    # The PBX's own id of this agent (sipgate "w0", a PBX user name); see hub/calls/users.py.
    pbx_id: str | None = Field(default=None, index=True, max_length=100)
    # The agent's own phone number (E.164): a PBX's answeringNumber names them by it.
    phone: str | None = Field(default=None, index=True, max_length=32)
    password_hash: str | None = None
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class UserTeam(SQLModel, table=True):
    __tablename__ = "user_team"

    user_id: int = Field(foreign_key="app_user.id", primary_key=True, ondelete="CASCADE")
    team_id: int = Field(foreign_key="team.id", primary_key=True, ondelete="CASCADE")


class ApiToken(SQLModel, table=True):
    """Only the SHA-256 of a token is stored; the token is shown once when made."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="app_user.id", index=True, ondelete="CASCADE")
    token_hash: str = Field(unique=True, max_length=64)
    name: str = ""
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_used_at: datetime | None = timestamp()


class Customer(SQLModel, table=True):
    __table_args__ = (
        Index("ix_customer_team_id_id", "team_id", "id"),
        Index("ix_customer_postal_code", "postal_code"),
        NEVER_REUSE_IDS,
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(default=CustomerKind.LEAD, max_length=20)
    name: str = ""
    company: str = ""
    industry: str = Field(default="", index=True)
    postal_code: str = ""
    city: str = ""
    country: str = ""
    notes: str = Field(default="", sa_type=Text)
    custom: dict[str, Any] = json_column(dict)
    owner_id: int | None = Field(default=None, foreign_key="app_user.id", index=True)
    team_id: int | None = Field(default=None, foreign_key="team.id")
    # Set when this record was merged into another; the row stays as a redirect.
    merged_into_id: int | None = Field(default=None, foreign_key="customer.id", index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # Not indexed: every contact moves these, and the "last contact" filter
    # compares the later of the two, which no single-column index serves.
    last_inbound_at: datetime | None = timestamp()
    last_outbound_at: datetime | None = timestamp()


class CustomerTag(SQLModel, table=True):
    """Tags as rows, so that segments can filter by tag with an index on both backends."""

    __tablename__ = "customer_tag"

    customer_id: int = Field(foreign_key="customer.id", primary_key=True, ondelete="CASCADE")
    tag: str = Field(primary_key=True, max_length=100, index=True)


class Identity(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("kind", "value", name="uq_identity_kind_value"),)

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True, ondelete="CASCADE")
    kind: str = Field(max_length=10)
    # Normalised form (lower-case email, E.164 phone); the raw form as received.
    value: str = Field(max_length=320)
    raw: str = ""
    primary: bool = False
    # False for a phone number that could not be parsed: kept, never dropped.
    verified: bool = True
    # Email: a permanent bounce (5.x.x) marks the address undeliverable until
    # the customer writes from it again; temporary bounces (4.x.x) are counted.
    undeliverable_at: datetime | None = timestamp()
    undeliverable_reason: str | None = Field(default=None, max_length=500)
    soft_bounces: int = 0
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Conversation(SQLModel, table=True):
    __table_args__ = (
        Index("ix_conversation_customer_channel", "customer_id", "channel", "status"),
        NEVER_REUSE_IDS,
    )

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", ondelete="CASCADE")
    channel: str = Field(max_length=20)
    subject: str = ""
    status: str = Field(default=ConversationStatus.OPEN, max_length=20, index=True)
    assignee_id: int | None = Field(default=None, foreign_key="app_user.id", index=True)
    team_id: int | None = Field(default=None, foreign_key="team.id", index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_activity_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Interaction(SQLModel, table=True):
    """One history entry: anything that went in or out, on any channel."""

    __table_args__ = (
        UniqueConstraint("channel", "provider_id", name="uq_interaction_channel_provider_id"),
        Index("ix_interaction_customer_time", "customer_id", "occurred_at", "id"),
        NEVER_REUSE_IDS,
    )

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", ondelete="CASCADE")
    conversation_id: int | None = Field(
        default=None, foreign_key="conversation.id", index=True, ondelete="SET NULL"
    )
    channel: str = Field(max_length=20)
    direction: str = Field(max_length=3)
    occurred_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    subject: str = ""
    text: str = Field(default="", sa_type=Text)
    provider_id: str | None = Field(default=None, max_length=500)
    sender: str = ""
    recipient: str = ""
    delivery_status: str | None = Field(default=None, max_length=30)
    meta: dict[str, Any] = json_column(dict)
    author_id: int | None = Field(default=None, foreign_key="app_user.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Attachment(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    interaction_id: int = Field(foreign_key="interaction.id", index=True, ondelete="CASCADE")
    filename: str = ""
    content_type: str = ""
    size: int | None = None
    sha256: str | None = Field(default=None, max_length=64)
    url: str | None = None


class Task(SQLModel, table=True):
    """A follow-up ("Wiedervorlage") on a customer."""

    __table_args__ = (
        # The reminders still to send (the scheduler's tick; migration 0021). The
        # conditions are spelt as the tick's query renders them, or the planners
        # would not see that the index covers it.
        Index(
            "ix_task_reminder_due",
            "due_at",
            sqlite_where=text("done IS 0 AND reminded_at IS NULL"),
            postgresql_where=text("done IS false AND reminded_at IS NULL"),
        ),
        NEVER_REUSE_IDS,
    )

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True, ondelete="CASCADE")
    assignee_id: int | None = Field(default=None, foreign_key="app_user.id", index=True)
    title: str
    due_at: datetime | None = timestamp(index=True)
    done: bool = False
    # When the scheduler sent its `task.due` reminder (once; migration 0016).
    reminded_at: datetime | None = timestamp()
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Consent(SQLModel, table=True):
    """Consent history: the newest row per (customer, channel, purpose) is in force."""

    __table_args__ = (Index("ix_consent_lookup", "customer_id", "channel", "purpose"),)

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", ondelete="CASCADE")
    channel: str = Field(max_length=20)
    purpose: str = Field(default="marketing", max_length=50)
    state: str = Field(max_length=20)
    source: str = ""
    recorded_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    actor_id: int | None = Field(default=None, foreign_key="app_user.id")
    action: str = Field(max_length=50)
    entity: str = Field(max_length=50)
    entity_id: int | None = None
    detail: dict[str, Any] = json_column(dict)
    # The client address the request came from (None: the CLI or the hub itself).
    client: str | None = Field(default=None, max_length=64)
    # The customer the entry is about, for "everything about this person".
    customer_id: int | None = Field(default=None, index=True)


class OutboxMessage(SQLModel, table=True):
    """One message to send: the durable seam between "decided to send" and the wire.

    The history `Interaction` is created with the row (delivery_status "queued"),
    so an agent sees the reply at once; the dispatcher then claims the row
    (status "sending", `claimed_at` as a lease), sends it and records the result
    on both. `attempts` counts claims and fences a late writer whose lease expired.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "status", "channel", "next_attempt_at", "id"),
        Index("ix_outbox_claimed", "channel", "claimed_at"),
        Index("ix_outbox_run_status", "campaign_run_id", "status"),
        # Expansion is idempotent: a run's step reaches each customer once.
        UniqueConstraint(
            "campaign_run_id", "campaign_step_id", "customer_id", name="uq_outbox_campaign_once"
        ),
        # The id travels in Twilio's status callback URL: a late report must
        # never match a newer row that inherited a deleted row's id (SQLite).
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True, ondelete="CASCADE")
    conversation_id: int | None = Field(
        default=None, foreign_key="conversation.id", ondelete="SET NULL"
    )
    interaction_id: int | None = Field(
        default=None, foreign_key="interaction.id", index=True, ondelete="SET NULL"
    )
    channel: str = Field(max_length=20)
    recipient: str = Field(max_length=320)
    body: str = Field(sa_type=Text)
    status: str = Field(default="queued", max_length=20)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    claimed_at: datetime | None = timestamp()
    last_error: str | None = Field(default=None, sa_type=Text)
    provider_id: str | None = Field(default=None, max_length=500)
    provider_status: str | None = Field(default=None, max_length=30)
    # Email: subject, extra headers (Message-ID, In-Reply-To, References,
    # Reply-To) and the configured mailbox whose SMTP relay sends it.
    subject: str = ""
    headers: dict[str, str] = json_column(dict)
    mailbox: str | None = Field(default=None, max_length=50)
    author_id: int | None = Field(default=None, foreign_key="app_user.id")
    # Campaign rows (migration 0016): which run and step made it; one per customer.
    # `html` is the rendered HTML part; `unsubscribe` the link and mailto the
    # sender puts into List-Unsubscribe. `uncertain`: found "sending" after a
    # crash, so it may have gone out already (counted in the campaign's stats).
    campaign_id: int | None = Field(default=None, foreign_key="campaign.id", index=True)
    campaign_step_id: int | None = Field(default=None, foreign_key="campaign_step.id")
    campaign_run_id: int | None = Field(default=None, foreign_key="campaign_run.id")
    html: str | None = Field(default=None, sa_type=Text)
    unsubscribe: dict[str, str] | None = Field(default=None, sa_column=Column(JSON))
    uncertain: bool = False
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class MailCheckpoint(SQLModel, table=True):
    """How far one IMAP folder has been read: committed with the messages it covers.

    A message is in the history if and only if its UID is <= last_uid under
    this uidvalidity (or it sits in the quarantine), so a crash at any point
    re-reads at most what was not committed, and ingest dedupes that.
    """

    __tablename__ = "mail_checkpoint"
    __table_args__ = (UniqueConstraint("mailbox", "folder", name="uq_mail_checkpoint_folder"),)

    id: int | None = Field(default=None, primary_key=True)
    mailbox: str = Field(max_length=50)
    folder: str = Field(max_length=200)
    uidvalidity: int = Field(sa_type=BigInteger)
    last_uid: int = Field(default=0, sa_type=BigInteger)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class QuarantineStatus(enum.StrEnum):
    HELD = "held"  # waiting for a fix and `crmhub quarantine retry`
    RELEASED = "released"  # a retry stored it in the history


class QuarantinedMail(SQLModel, table=True):
    """A message that could not be parsed or stored, kept raw so nothing is lost.

    It counts as read for the checkpoint, so it never blocks the mail behind it.
    """

    __tablename__ = "mail_quarantine"
    __table_args__ = (
        UniqueConstraint("mailbox", "folder", "uidvalidity", "uid", name="uq_mail_quarantine_uid"),
        NEVER_REUSE_IDS,
    )

    id: int | None = Field(default=None, primary_key=True)
    mailbox: str = Field(max_length=50)
    folder: str = Field(max_length=200)
    uidvalidity: int = Field(sa_type=BigInteger)
    uid: int = Field(sa_type=BigInteger)
    raw: bytes = Field(sa_type=LargeBinary)
    error: str = Field(sa_type=Text)
    status: str = Field(default=QuarantineStatus.HELD, max_length=20, index=True)
    attempts: int = 1
    interaction_id: int | None = Field(
        default=None, foreign_key="interaction.id", ondelete="SET NULL"
    )
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class HealthProbe(SQLModel, table=True):
    """One row that /readyz rewrites: a node is ready only if a write commits.

    A SELECT succeeds on a full disk or behind a held write lock, where every
    webhook would fail; only a committed write shows that writes work.
    """

    __tablename__ = "health_probe"

    id: int | None = Field(default=None, primary_key=True)
    checked_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Suppression(SQLModel, table=True):
    """What erasure keeps of a person: keyed hashes of their identities.

    HMAC-SHA256 with `privacy.suppression_key`, not the address: without the
    key the list names nobody (a plain hash of a phone number is reversed by
    trying them all). `opted_out`: they had opted out of the channel, so
    nothing is ever sent to that identity again.
    """

    __table_args__ = (UniqueConstraint("kind", "digest", name="uq_suppression_digest"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=20)
    digest: str = Field(max_length=64)
    opted_out: bool = False
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class IdentityClaim(SQLModel, table=True):
    """An email or phone given for a customer while a customer of another team holds it.

    The creating agent's answer is the same as for a free identity (a 409
    would tell them that the address belongs to a customer of another team);
    the identity stays with its holder, and supervisors see the claim and
    merge the records or drop it (README: Security and privacy).
    """

    __tablename__ = "identity_claim"
    __table_args__ = (
        UniqueConstraint("customer_id", "kind", "value", name="uq_identity_claim"),
        # A lookup asks "who claims this number?" (migration 0019).
        Index("ix_identity_claim_kind_value", "kind", "value"),
    )

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True, ondelete="CASCADE")
    kind: str = Field(max_length=10)
    value: str = Field(max_length=320)
    raw: str = ""
    claimed_by: int | None = Field(default=None, foreign_key="app_user.id", ondelete="SET NULL")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class EventLogEntry(SQLModel, table=True):
    """Published events, kept for a bounded window: a console that reconnects asks for
    what came after the last id it saw. The id orders events across nodes (one
    sequence in the database) and is the `id` of every frame on the stream."""

    __tablename__ = "event_log"
    __table_args__ = (NEVER_REUSE_IDS,)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    kind: str = Field(max_length=50)
    data: dict[str, Any] = json_column(dict)
    team_id: int | None = None
    # The only users who receive it (a screen pop); None: by team.
    users: list[int] | None = Field(default=None, sa_type=JSON)


class PhoneCall(SQLModel, table=True):
    """A call's state, keyed by provider and call id (routing/calls.py advances it)."""

    __tablename__ = "phone_call"
    __table_args__ = (UniqueConstraint("provider", "call_id", name="uq_phone_call_provider_call"),)

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=20)
    call_id: str = Field(max_length=200)
    direction: str = Field(max_length=3)
    from_number: str = Field(default="", max_length=100)
    to_number: str = Field(default="", max_length=100)
    state: str = Field(max_length=10)
    customer_id: int | None = Field(default=None, foreign_key="customer.id", ondelete="SET NULL")
    interaction_id: int | None = Field(
        default=None, foreign_key="interaction.id", ondelete="SET NULL"
    )
    ringing: list[str] = json_column(list)
    answered_by: str | None = Field(default=None, max_length=200)
    cause: str | None = Field(default=None, max_length=20)
    started_at: datetime = Field(sa_type=UTCDateTime)
    answered_at: datetime | None = timestamp()
    ended_at: datetime | None = timestamp()
    # The team a PBX queue routed it to (voice.pbx.queues): whose online agents its
    # pop goes to when the PBX names nobody, from ringing to the end.
    route_team_id: int | None = Field(default=None, foreign_key="team.id", ondelete="SET NULL")
