"""A running hub with the SMS channel on, and requests signed exactly as Twilio signs them.

The signature is computed with twilio's own `RequestValidator`, not with
channels/sms/signature.py, so a mistake in our helper cannot hide itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from hub.runtime import Hub
from hub.store.db import Database
from hub.web.app import create_app
from tests.support.hubs import make_settings

TOKEN = "test-token"
PUBLIC = "http://testserver.example"
PATH = "/webhooks/twilio/sms"
SMS: dict[str, Any] = {"enabled": True, "auth_token": TOKEN, "public_url": PUBLIC}
SALES_LINE = "+49 30 5550100"  # teams.by_address -> Sales in tests


def twilio_form(sid: str = "SM0001", body: str = "Hello", **extra: str) -> dict[str, str]:
    """What Twilio posts for an inbound SMS to a plain number."""
    return {
        "ToCountry": "DE",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "SmsSid": sid,
        "SmsStatus": "received",
        "Body": body,
        "To": "+49305550100",
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": "+4917155500001",
        "ApiVersion": "2010-04-01",
        "FromCountry": "DE",
        **extra,
    }


def signature_of(params: Mapping[str, str], url: str = PUBLIC + PATH, token: str = TOKEN) -> str:
    return str(RequestValidator(token).compute_signature(url, dict(params)))


async def post_signed(
    client: TestClient[Any, Any],
    params: Mapping[str, str],
    *,
    url: str = PUBLIC + PATH,
    path: str = PATH,
    headers: Mapping[str, str] | None = None,
    token: str = TOKEN,
) -> ClientResponse:
    signed = {"X-Twilio-Signature": signature_of(params, url, token), **(headers or {})}
    return await client.post(path, data=dict(params), headers=signed)


@asynccontextmanager
async def sms_client(
    db_url: str, *, server: dict[str, Any] | None = None, **sms: Any
) -> AsyncIterator[tuple[TestClient[Any, Any], Hub]]:
    """A hub (SMS on, test token) behind a test server; `sms` overrides settings.sms keys."""
    overrides: dict[str, Any] = {"sms": {**SMS, **sms}}
    if server:
        overrides["server"] = server
    hub = Hub(make_settings(db_url, **overrides))
    await hub.start()
    client = TestClient(TestServer(create_app(hub, manage_hub=False)))
    await client.start_server()
    try:
        yield client, hub
    finally:
        await client.close()
        await hub.stop()


async def rows(db: Database, stmt: Any) -> list[tuple[Any, ...]]:
    async with db.read() as s:
        return [tuple(r) for r in (await s.exec(stmt)).all()]


async def count(db: Database, model: Any) -> int:
    async with db.read() as s:
        return int((await s.exec(select(func.count()).select_from(model))).one()[0])
