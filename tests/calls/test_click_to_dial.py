"""POST /api/v1/calls against the Twilio fake (the real twilio library) and a PBX endpoint."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import select

from hub.config import Settings
from hub.store.models import Consent, ConsentState, Customer, Identity, Interaction, PhoneCall
from hub.web.auth import HUB
from tests.calls.support import PUBLIC, TWILIO_TOKEN, post_twilio
from tests.support.api import Api
from tests.support.hubs import make_settings
from tests.support.sms import rows
from tests.support.twilio_fake import ACCOUNT_SID, TwilioFake, twilio_fake

pytestmark = pytest.mark.db

OUR_NUMBER = "+49305550100"
CUSTOMER = "+4917155500009"


@pytest.fixture
async def fake() -> AsyncIterator[TwilioFake]:
    async with twilio_fake() as running:
        yield running


@pytest.fixture
async def pbx_requests() -> AsyncIterator[tuple[str, list[tuple[str, Any]]]]:
    seen: list[tuple[str, Any]] = []

    async def dial(request: web.Request) -> web.Response:
        seen.append((request.path_qs, await request.json()))
        return web.json_response({"callId": "pbx-77"})

    app = web.Application()
    app.router.add_post("/dial/{ext}", dial)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}", seen
    await runner.cleanup()


@pytest.fixture
def settings(
    db_url: str, fake: TwilioFake, pbx_requests: tuple[str, list[tuple[str, Any]]]
) -> Settings:
    return make_settings(
        db_url,
        voice={
            "public_url": PUBLIC,
            "twilio": {
                "enabled": True,
                "auth_token": TWILIO_TOKEN,
                "account_sid": ACCOUNT_SID,
                "from_number": OUR_NUMBER,
                "api_base_url": fake.base_url,
            },
            "pbx": {
                "enabled": True,
                "token": "t",
                "dial_url": pbx_requests[0] + "/dial/{extension}?to={number}",
            },
        },
    )


async def customer_with_number(api: Api) -> int:
    status, body = await api.call(
        "POST",
        "/api/v1/customers",
        json={"name": "Erika", "team_id": api.team_ids["Support"], "phones": [CUSTOMER]},
    )
    assert status == 201, body
    return int(body["id"])


async def test_click_to_dial_calls_twilio_and_logs_the_call(api: Api, fake: TwilioFake) -> None:
    customer_id = await customer_with_number(api)
    status, body = await api.call(
        "POST", "/api/v1/calls", as_="agent", json={"customer_id": customer_id}
    )
    assert status == 201, body
    [sent] = fake.requests
    assert sent.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
    assert (sent.form["To"], sent.form["From"]) == ("client:agent", OUR_NUMBER)
    assert sent.form["StatusCallback"] == PUBLIC + "/webhooks/twilio/voice/status"
    assert f"<Number>{CUSTOMER}</Number>" in sent.form["Twiml"]
    assert body == {"provider": "twilio", "call_id": body["call_id"], "to": CUSTOMER}
    assert body["call_id"].startswith("CA")


async def test_click_to_dial_history_and_status_callbacks(api: Api, fake: TwilioFake) -> None:
    customer_id = await customer_with_number(api)
    _, body = await api.call("POST", "/api/v1/calls", as_="agent", json={"number": "0171 55500009"})
    sid = body["call_id"]
    hub_db = api.client.server.app[HUB].db  # type: ignore[union-attr]
    assert await rows(
        hub_db, select(Interaction.customer_id, Interaction.channel, Interaction.direction)
    ) == [(customer_id, "phone", "out")]
    # Twilio reports the agent leg answering, then the call completing: one entry still.
    form = {
        "AccountSid": ACCOUNT_SID,
        "CallSid": sid,
        "Direction": "outbound-api",
        "From": OUR_NUMBER,
        "To": "client:agent",
    }
    assert (
        await post_twilio(
            api.client, "/webhooks/twilio/voice/status", {**form, "CallStatus": "in-progress"}
        )
    ).status == 204
    assert (
        await post_twilio(
            api.client, "/webhooks/twilio/voice/status", {**form, "CallStatus": "completed"}
        )
    ).status == 204
    assert await rows(hub_db, select(PhoneCall.state, PhoneCall.to_number)) == [("ended", CUSTOMER)]
    assert len(await rows(hub_db, select(Interaction.id))) == 1


async def test_opted_out_customer_is_refused_409(api: Api, fake: TwilioFake) -> None:
    customer_id = await customer_with_number(api)
    hub_db = api.client.server.app[HUB].db  # type: ignore[union-attr]
    async with hub_db.write() as s:
        s.add(Consent(customer_id=customer_id, channel="phone", state=ConsentState.OPTED_OUT))
    status, body = await api.call(
        "POST", "/api/v1/calls", as_="agent", json={"customer_id": customer_id}
    )
    assert status == 409, body
    assert fake.requests == []
    assert await rows(hub_db, select(PhoneCall.id)) == []


async def test_bad_bodies_and_invisible_customers(api: Api, fake: TwilioFake) -> None:
    customer_id = await customer_with_number(api)
    assert (await api.call("POST", "/api/v1/calls", as_="agent", json={}))[0] == 422
    both = {"customer_id": customer_id, "number": CUSTOMER}
    assert (await api.call("POST", "/api/v1/calls", as_="agent", json=both))[0] == 422
    other_team = await api.call(
        "POST", "/api/v1/calls", as_="sales_agent", json={"customer_id": customer_id}
    )
    assert other_team[0] == 404
    assert fake.requests == []


async def test_click_to_dial_through_the_pbx(
    api: Api, pbx_requests: tuple[str, list[tuple[str, Any]]]
) -> None:
    hub = api.client.server.app[HUB]  # type: ignore[union-attr]
    hub.settings.voice.click_to_dial = "pbx"
    customer_id = await customer_with_number(api)
    status, body = await api.call(
        "POST", "/api/v1/calls", as_="agent", json={"customer_id": customer_id}
    )
    assert status == 201, body
    assert body == {"provider": "pbx", "call_id": "pbx-77", "to": CUSTOMER}
    [(path, sent)] = pbx_requests[1]
    assert path == "/dial/agent?to=%2B4917155500009"
    assert sent == {"from": "agent", "to": CUSTOMER, "user": "agent"}
    assert await rows(hub.db, select(PhoneCall.provider, PhoneCall.call_id)) == [("pbx", "pbx-77")]
    assert await rows(hub.db, select(Customer.id)) == [(customer_id,)]
    assert await rows(hub.db, select(Identity.value)) == [(CUSTOMER,)]
