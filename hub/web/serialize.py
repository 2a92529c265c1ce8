"""Rows -> JSON-ready dicts. One function per entity, so every endpoint agrees."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row

from hub.store.models import Conversation, Customer, Identity, IdentityKind, Interaction, Task


def ts(value: datetime | None) -> str | None:
    """Always UTC in answers, whatever zone a client sent (naive input counts as UTC)."""
    if value is None:
        return None
    return (
        value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    ).isoformat()


# Each accepts the model or a Core row of its table (same attribute names):
# hot paths such as the screen pop read rows without building ORM objects.
def identity_json(ident: Identity | Row[Any]) -> dict[str, Any]:
    return {
        "value": ident.value,
        "raw": ident.raw,
        "primary": ident.primary,
        "verified": ident.verified,
        # Email bounces (always null / 0 for phones): why mail to it may not arrive.
        "undeliverable_at": ts(ident.undeliverable_at),
        "undeliverable_reason": ident.undeliverable_reason,
        "soft_bounces": ident.soft_bounces,
    }


def customer_json(
    c: Customer | Row[Any], identities: Sequence[Identity | Row[Any]], tags: Sequence[str]
) -> dict[str, Any]:
    return {
        "id": c.id,
        "kind": c.kind,
        "name": c.name,
        "company": c.company,
        "industry": c.industry,
        "postal_code": c.postal_code,
        "city": c.city,
        "country": c.country,
        "notes": c.notes,
        "tags": list(tags),
        "custom": c.custom,
        "owner_id": c.owner_id,
        "team_id": c.team_id,
        "emails": [identity_json(i) for i in identities if i.kind == IdentityKind.EMAIL],
        "phones": [identity_json(i) for i in identities if i.kind == IdentityKind.PHONE],
        "created_at": ts(c.created_at),
        "updated_at": ts(c.updated_at),
        "last_inbound_at": ts(c.last_inbound_at),
        "last_outbound_at": ts(c.last_outbound_at),
    }


def interaction_json(i: Interaction | Row[Any]) -> dict[str, Any]:
    return {
        "id": i.id,
        "customer_id": i.customer_id,
        "conversation_id": i.conversation_id,
        "channel": i.channel,
        "direction": i.direction,
        "occurred_at": ts(i.occurred_at),
        "subject": i.subject,
        "text": i.text,
        "provider_id": i.provider_id,
        "sender": i.sender,
        "recipient": i.recipient,
        "delivery_status": i.delivery_status,
        "metadata": i.meta,
        "author_id": i.author_id,
    }


def conversation_json(c: Conversation) -> dict[str, Any]:
    return {
        "id": c.id,
        "customer_id": c.customer_id,
        "channel": c.channel,
        "subject": c.subject,
        "status": c.status,
        "assignee_id": c.assignee_id,
        "team_id": c.team_id,
        "created_at": ts(c.created_at),
        "last_activity_at": ts(c.last_activity_at),
    }


def task_json(t: Task) -> dict[str, Any]:
    return {
        "id": t.id,
        "customer_id": t.customer_id,
        "assignee_id": t.assignee_id,
        "title": t.title,
        "due_at": ts(t.due_at),
        "done": t.done,
        "created_at": ts(t.created_at),
    }
