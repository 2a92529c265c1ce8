"""Changes that must never be missing from the audit log are written with the change."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from channels.base import Channel, InboundContact
from hub.runtime import Hub
from hub.store.tables import audit_t

pytestmark = pytest.mark.db


async def _entries(hub: Hub, action: str) -> list[tuple[Any, ...]]:
    """What is committed now: the batched request entries are not flushed first."""
    async with hub.db.read() as s:
        conn = await s.connection()
        rows = await conn.execute(
            select(
                audit_t.c.action,
                audit_t.c.entity,
                audit_t.c.entity_id,
                audit_t.c.customer_id,
                audit_t.c.client,
                audit_t.c.detail,
            )
            .where(audit_t.c.action == action)
            .order_by(audit_t.c.id)
        )
        return [tuple(r) for r in rows]


async def test_a_sent_reply_and_a_consent_are_audited_in_their_transaction(
    erasing: tuple[Hub, TestClient[Any, Any], str],
) -> None:
    hub, client, token = erasing
    auth = {"Authorization": f"Bearer {token}"}
    contact = await hub.ingestor.ingest(
        InboundContact(Channel.SMS, "+4917000555001", text="Hallo", provider_id="SMaudit1")
    )
    resp = await client.post(
        f"/api/v1/conversations/{contact.conversation_id}/reply", headers=auth, json={"text": "Hi"}
    )
    assert resp.status == 202
    sent = await resp.json()
    assert await _entries(hub, "reply") == [
        (
            "reply",
            "conversation",
            contact.conversation_id,
            contact.customer_id,
            "127.0.0.1",
            {"channel": "sms", "interaction_id": sent["id"]},
        )
    ]
    resp = await client.post(
        f"/api/v1/customers/{contact.customer_id}/consent",
        headers=auth,
        json={"channel": "sms", "state": "opted_out", "source": "phone call"},
    )
    assert resp.status == 201
    assert await _entries(hub, "consent") == [
        (
            "consent",
            "customer",
            contact.customer_id,
            contact.customer_id,
            "127.0.0.1",
            {"channel": "sms", "purpose": "marketing", "state": "opted_out"},
        )
    ]
    # A refused change leaves no entry: the reply to an unknown conversation.
    resp = await client.post("/api/v1/conversations/999999/reply", headers=auth, json={"text": "x"})
    assert resp.status == 404
    assert len(await _entries(hub, "reply")) == 1
