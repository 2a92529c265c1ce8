"""A hub with the three voice providers on; requests authenticated as each provider does."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from twilio.request_validator import RequestValidator

from hub.runtime import Hub
from hub.web.app import create_app
from tests.support.hubs import make_settings

PUBLIC = "http://testserver.example"
TWILIO_TOKEN = "voice-twilio-token"
SIPGATE_PASSWORD = "sipgate-secret"
PBX_TOKEN = "pbx-token-123"
VOICE: dict[str, Any] = {
    "public_url": PUBLIC,
    "twilio": {"enabled": True, "auth_token": TWILIO_TOKEN},
    "sipgate": {"enabled": True, "user": "sipgate", "password": SIPGATE_PASSWORD},
    "pbx": {
        "enabled": True,
        "token": PBX_TOKEN,
        "block_list": ["+49 30 6660000"],
        "queues": {"Hotline-Sales": "Sales"},
    },
}
CALLER = "+4917155500001"
SALES_LINE = "+49305550100"  # teams.by_address -> Sales in tests


@asynccontextmanager
async def voice_client(db_url: str) -> AsyncIterator[tuple[TestClient[Any, Any], Hub]]:
    hub = Hub(make_settings(db_url, voice=VOICE))
    await hub.start()
    client = TestClient(TestServer(create_app(hub, manage_hub=False)))
    await client.start_server()
    try:
        yield client, hub
    finally:
        await client.close()
        await hub.stop()


async def post_twilio(
    client: TestClient[Any, Any], path: str, params: Mapping[str, str], token: str = TWILIO_TOKEN
) -> ClientResponse:
    sig = RequestValidator(token).compute_signature(PUBLIC + path, dict(params))
    return await client.post(path, data=dict(params), headers={"X-Twilio-Signature": sig})


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def post_sipgate(
    client: TestClient[Any, Any],
    pairs: list[tuple[str, str]],
    auth: str | None = None,
) -> ClientResponse:
    headers = {"Authorization": auth or basic("sipgate", SIPGATE_PASSWORD)}
    return await client.post("/webhooks/sipgate", data=pairs, headers=headers)


async def post_pbx(
    client: TestClient[Any, Any], body: dict[str, Any], token: str = PBX_TOKEN
) -> ClientResponse:
    return await client.post(
        f"/webhooks/cti/{token}",
        data=json.dumps(body),
        headers={"Content-Type": "application/json"},
    )


def sipgate_new(call_id: str, users: tuple[str, ...] = ("w0",)) -> list[tuple[str, str]]:
    pairs = [
        ("event", "newCall"),
        ("direction", "in"),
        ("from", CALLER.lstrip("+")),
        ("to", SALES_LINE.lstrip("+")),
        ("callId", call_id),
    ]
    return pairs + [("user[]", u) for u in users] + [("userId[]", u) for u in users]


def sipgate_answer(call_id: str, user: str = "w0") -> list[tuple[str, str]]:
    return [
        ("event", "answer"),
        ("direction", "in"),
        ("from", CALLER.lstrip("+")),
        ("to", SALES_LINE.lstrip("+")),
        ("callId", call_id),
        ("user", user),
        ("userId", user),
        ("answeringNumber", SALES_LINE.lstrip("+")),
    ]


def sipgate_hangup(call_id: str, cause: str = "normalClearing") -> list[tuple[str, str]]:
    return [
        ("event", "hangup"),
        ("direction", "in"),
        ("from", CALLER.lstrip("+")),
        ("to", SALES_LINE.lstrip("+")),
        ("callId", call_id),
        ("cause", cause),
    ]
