"""Core `Table` handles of the models, for multi-row statements (ingest, import, export).

SQLModel types `__table__` loosely; reading it once here keeps that cast in
one place instead of in every module that writes in bulk.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table

from hub.store.campaign_models import (
    Campaign,
    CampaignRun,
    CampaignStep,
    CampaignTaskMark,
    MessageTemplate,
    MessageTemplateVersion,
    Segment,
)
from hub.store.models import (
    Attachment,
    AuditEvent,
    Consent,
    Conversation,
    Customer,
    CustomerTag,
    EventLogEntry,
    HealthProbe,
    Identity,
    IdentityClaim,
    Interaction,
    MailCheckpoint,
    OutboxMessage,
    PhoneCall,
    QuarantinedMail,
    Suppression,
    Task,
    Team,
    User,
    UserTeam,
)

customer_t = cast(Table, Customer.__table__)  # type: ignore[attr-defined]
identity_t = cast(Table, Identity.__table__)  # type: ignore[attr-defined]
tag_t = cast(Table, CustomerTag.__table__)  # type: ignore[attr-defined]
conversation_t = cast(Table, Conversation.__table__)  # type: ignore[attr-defined]
interaction_t = cast(Table, Interaction.__table__)  # type: ignore[attr-defined]
attachment_t = cast(Table, Attachment.__table__)  # type: ignore[attr-defined]
consent_t = cast(Table, Consent.__table__)  # type: ignore[attr-defined]
user_t = cast(Table, User.__table__)  # type: ignore[attr-defined]
team_t = cast(Table, Team.__table__)  # type: ignore[attr-defined]
outbox_t = cast(Table, OutboxMessage.__table__)  # type: ignore[attr-defined]
checkpoint_t = cast(Table, MailCheckpoint.__table__)  # type: ignore[attr-defined]
quarantine_t = cast(Table, QuarantinedMail.__table__)  # type: ignore[attr-defined]
health_probe_t = cast(Table, HealthProbe.__table__)  # type: ignore[attr-defined]
audit_t = cast(Table, AuditEvent.__table__)  # type: ignore[attr-defined]
suppression_t = cast(Table, Suppression.__table__)  # type: ignore[attr-defined]
task_t = cast(Table, Task.__table__)  # type: ignore[attr-defined]
claim_t = cast(Table, IdentityClaim.__table__)  # type: ignore[attr-defined]
event_log_t = cast(Table, EventLogEntry.__table__)  # type: ignore[attr-defined]
phone_call_t = cast(Table, PhoneCall.__table__)  # type: ignore[attr-defined]
user_team_t = cast(Table, UserTeam.__table__)  # type: ignore[attr-defined]
segment_t = cast(Table, Segment.__table__)  # type: ignore[attr-defined]
message_template_t = cast(Table, MessageTemplate.__table__)  # type: ignore[attr-defined]
template_version_t = cast(Table, MessageTemplateVersion.__table__)  # type: ignore[attr-defined]
campaign_t = cast(Table, Campaign.__table__)  # type: ignore[attr-defined]
campaign_step_t = cast(Table, CampaignStep.__table__)  # type: ignore[attr-defined]
campaign_run_t = cast(Table, CampaignRun.__table__)  # type: ignore[attr-defined]
campaign_task_mark_t = cast(Table, CampaignTaskMark.__table__)  # type: ignore[attr-defined]
