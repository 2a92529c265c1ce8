"""Shared parts of the outbound SMS tests: a hub sending to a local Twilio fake.

Retries are made fast through config (outbox.retry_base_seconds), and tests
wait for outcomes by polling the database in a bounded loop (`eventually`),
never by sleeping a fixed time. The fixtures are in tests/sms_outbound_fixtures.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, select
from twilio.request_validator import RequestValidator

from channels.base import Channel, InboundContact
from hub.outbox.queue import Enqueued, enqueue
from hub.runtime import Hub
from hub.store.models import Interaction, OutboxMessage
from tests.support.api import Api

T = TypeVar("T")
TOKEN = "status-token"
PUBLIC = "https://crm.example.com"
FROM = "+4930555000"
CUSTOMER = "+4917155500001"
MAX_ATTEMPTS = 3


async def eventually(probe: Callable[[], Awaitable[T | None]], within: float = 10.0) -> T:
    """Poll until `probe` returns something truthy; fail after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = await probe()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def outbox_row(hub: Hub, status: str | None = None) -> OutboxMessage | None:
    async with hub.db.read() as s:
        row = (await s.exec(select(OutboxMessage).order_by(col(OutboxMessage.id)))).first()
    return row if row is not None and (status is None or row.status == status) else None


async def interaction(hub: Hub, iid: int) -> Interaction:
    async with hub.db.read() as s:
        found = await s.get(Interaction, iid)
    assert found is not None
    return found


async def sms_conversation(hub: Hub, text: str = "Hallo?") -> tuple[int, int]:
    result = await hub.ingestor.ingest(
        InboundContact(Channel.SMS, "0171 55500001", recipient=FROM, text=text, provider_id="SMin")
    )
    assert result.conversation_id is not None
    return result.customer_id, result.conversation_id


async def post_status(api: Api, params: dict[str, str], query: str = "", **kw: Any) -> int:
    path = "/webhooks/twilio/sms/status" + query
    signature = RequestValidator(kw.pop("token", TOKEN)).compute_signature(PUBLIC + path, params)
    headers = {} if kw.pop("unsigned", False) else {"X-Twilio-Signature": signature}
    resp = await api.client.post(path, data=params, headers=headers)
    return resp.status


async def queue(
    conn: AsyncConnection, customer_id: int, conv_id: int, *bodies: str
) -> list[Enqueued]:
    """Put messages straight into the outbox, in the caller's transaction."""
    return [
        await enqueue(
            conn,
            customer_id=customer_id,
            conversation_id=conv_id,
            channel=Channel.SMS,
            sender=FROM,
            recipient=CUSTOMER,
            body=body,
            author_id=None,
        )
        for body in bodies
    ]
