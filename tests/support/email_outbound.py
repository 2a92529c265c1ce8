"""Shared set-up of the email reply tests: a hub with one mailbox sending through the
real aiosmtpd fixture (a second one on request), no background dispatcher, and
helpers to create inbound mail and read back outbox rows and interactions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlmodel import col
from sqlmodel import select as sm_select

from channels.base import Channel, InboundContact
from hub.runtime import Hub
from hub.store.models import Interaction, OutboxMessage, utcnow
from hub.store.tables import outbox_t
from tests.support.api import Api
from tests.support.smtp_server import SmtpServer

SECRET = "test-reply-token-secret-0123"
SUPPORT = "support@example.com"
SALES = "sales@example.com"
CUSTOMER = "kunde@customer.example"
FIRST_ID = "<m1@customer.example>"
MAX_ATTEMPTS = 3
MAX_BODY = 2000


def mailbox_config(name: str, address: str, server: SmtpServer | None) -> dict[str, Any]:
    box: dict[str, Any] = {"name": name, "address": address}
    if server is not None:
        box["smtp"] = {
            "host": server.host,
            "port": server.port,
            "tls": "none",
            "pool_size": 1,
            "timeout": 10.0,
            "local_hostname": "crmhub.test",
            "max_body_chars": MAX_BODY,
        }
    return box


async def inbound_email(
    hub: Hub,
    provider_id: str = FIRST_ID,
    *,
    sender: str = f"Kunde <{CUSTOMER}>",
    recipient: str = SUPPORT,
    subject: str = "Lieferung",
    mailbox: str | None = "support",
    refs: tuple[str, ...] = (),
) -> tuple[int, int]:
    meta: dict[str, Any] = {"mailbox": mailbox, "folder": "INBOX", "uid": 1} if mailbox else {}
    result = await hub.ingestor.ingest(
        InboundContact(
            channel=Channel.EMAIL,
            sender=sender,
            recipient=recipient,
            subject=subject,
            text="Wo bleibt meine Bestellung?",
            provider_id=provider_id,
            thread_refs=refs,
            metadata=meta,
        )
    )
    assert result.conversation_id is not None
    return result.customer_id, result.conversation_id


async def outbox_rows(hub: Hub) -> list[OutboxMessage]:
    async with hub.db.read() as s:
        return list((await s.exec(sm_select(OutboxMessage).order_by(col(OutboxMessage.id)))).all())


async def interaction_row(hub: Hub, iid: int) -> Interaction:
    async with hub.db.read() as s:
        found = await s.get(Interaction, iid)
    assert found is not None
    return found


async def count_rows(hub: Hub, table: Any) -> int:
    async with hub.db.read() as s:
        conn = await s.connection()
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def make_due(hub: Hub) -> None:
    async with hub.db.write() as s:
        conn = await s.connection()
        await conn.execute(update(outbox_t).values(next_attempt_at=utcnow()))


async def reply_as(
    api: Api, conv_id: int, text: str = "Sie ist unterwegs.", as_: str = "agent", **extra: Any
) -> tuple[int, Any]:
    return await api.call(
        "POST", f"/api/v1/conversations/{conv_id}/reply", as_, json={"text": text, **extra}
    )
