"""Agent replies by SMS end to end: API -> outbox -> dispatcher -> real twilio -> fake Twilio."""

from __future__ import annotations

from sqlmodel import select

from channels.base import Channel, InboundContact
from hub.runtime import Hub
from hub.store.db import Database
from hub.store.models import Consent
from tests.support.api import Api
from tests.support.hubs import make_settings
from tests.support.sms_outbound import (
    CUSTOMER,
    FROM,
    MAX_ATTEMPTS,
    PUBLIC,
    eventually,
    interaction,
    outbox_row,
    sms_conversation,
)
from tests.support.twilio_fake import TwilioFake


async def test_reply_is_queued_sent_and_recorded(api: Api, hub: Hub, fake: TwilioFake) -> None:
    customer_id, conv_id = await sms_conversation(hub)
    status, body = await api.call(
        "POST", f"/api/v1/conversations/{conv_id}/reply", "agent", json={"text": "Grüße! 😀"}
    )
    assert status == 202
    assert (body["delivery_status"], body["direction"], body["recipient"]) == (
        "queued",
        "out",
        CUSTOMER,
    )
    row = await eventually(lambda: outbox_row(hub, "sent"))
    [request] = fake.requests
    assert request.form == {
        "To": CUSTOMER,
        "Body": "Grüße! 😀",
        "From": FROM,
        "StatusCallback": f"{PUBLIC}/webhooks/twilio/sms/status?outbox={row.id}",
    }
    sid = f"SM{1:032x}"
    assert (row.attempts, row.provider_id, row.recipient, row.last_error) == (
        1,
        sid,
        CUSTOMER,
        None,
    )
    sent = await interaction(hub, body["id"])
    assert (
        sent.customer_id,
        sent.conversation_id,
        sent.channel,
        sent.direction,
        sent.text,
        sent.sender,
        sent.recipient,
        sent.provider_id,
        sent.delivery_status,
        sent.author_id,
        sent.meta,
    ) == (
        customer_id,
        conv_id,
        "sms",
        "out",
        "Grüße! 😀",
        FROM,
        CUSTOMER,
        sid,
        "queued",
        api.user_ids["agent"],
        {"segments": 1, "encoding": "UCS-2", "outbox_id": row.id},
    )
    _, conv = await api.call("GET", f"/api/v1/conversations/{conv_id}", "agent")
    assert [(i["direction"], i["text"]) for i in conv["interactions"]] == [
        ("in", "Hallo?"),
        ("out", "Grüße! 😀"),
    ]


async def test_an_opted_out_customer_is_never_sent_to(api: Api, hub: Hub, fake: TwilioFake) -> None:
    customer_id, conv_id = await sms_conversation(hub)
    async with hub.db.write() as s:
        s.add(Consent(customer_id=customer_id, channel="sms", state="opted_out", source="STOP"))
    status, err = await api.call(
        "POST", f"/api/v1/conversations/{conv_id}/reply", "agent", json={"text": "Hi"}
    )
    assert (status, err) == (
        409,
        {"error": "conflict", "detail": "the customer opted out of SMS; nothing was sent"},
    )
    assert await outbox_row(hub) is None
    assert fake.requests == []


async def test_21610_fails_and_records_the_opt_out(api: Api, hub: Hub, fake: TwilioFake) -> None:
    customer_id, conv_id = await sms_conversation(hub)
    fake.fail_next(1, 400, 21610)
    _, body = await api.call("POST", f"/api/v1/conversations/{conv_id}/reply", json={"text": "a"})
    row = await eventually(lambda: outbox_row(hub, "failed"))
    assert row.attempts == 1 and row.last_error is not None and row.last_error.startswith("21610")
    failed = await interaction(hub, body["id"])
    assert (failed.delivery_status, failed.meta["error_code"]) == ("failed", "21610")
    async with hub.db.read() as s:
        consent = (await s.exec(select(Consent.customer_id, Consent.state, Consent.source))).all()
    assert consent == [(customer_id, "opted_out", "twilio 21610")]
    status, _ = await api.call("POST", f"/api/v1/conversations/{conv_id}/reply", json={"text": "b"})
    assert status == 409
    assert len(fake.requests) == 1


async def test_429_is_retried_with_backoff(api: Api, hub: Hub, fake: TwilioFake) -> None:
    _, conv_id = await sms_conversation(hub)
    fake.fail_next(1, 429, 20429)
    _, body = await api.call("POST", f"/api/v1/conversations/{conv_id}/reply", json={"text": "a"})
    row = await eventually(lambda: outbox_row(hub, "sent"))
    assert (row.attempts, row.provider_id, row.last_error) == (2, f"SM{1:032x}", None)
    assert [r.form["Body"] for r in fake.requests] == ["a", "a"]
    assert (await interaction(hub, body["id"])).delivery_status == "queued"


async def test_5xx_until_attempts_run_out_fails(api: Api, hub: Hub, fake: TwilioFake) -> None:
    _, conv_id = await sms_conversation(hub)
    fake.fail_next(MAX_ATTEMPTS, 500)
    _, body = await api.call("POST", f"/api/v1/conversations/{conv_id}/reply", json={"text": "a"})
    row = await eventually(lambda: outbox_row(hub, "failed"))
    assert row.attempts == MAX_ATTEMPTS == len(fake.requests)
    assert row.last_error == "500: HTTP 500: Unable to create record: fake error 500"
    assert (await interaction(hub, body["id"])).delivery_status == "failed"


async def test_replies_that_cannot_be_sent_are_refused_before_queuing(
    api: Api, hub: Hub, fake: TwilioFake
) -> None:
    _, conv_id = await sms_conversation(hub)
    path = f"/api/v1/conversations/{conv_id}/reply"
    status, err = await api.call("POST", path, "agent", json={"text": "x" * 1601})
    assert (status, err["detail"]) == (
        422,
        "text: the message has 1601 characters; at most 1600 can be sent by SMS",
    )
    assert (await api.call("POST", path, "marketing", json={"text": "x"}))[0] == 403
    assert (await api.call("POST", path, "sales_agent", json={"text": "x"}))[0] == 404
    assert (await api.call("POST", path, "agent", json={"text": ""}))[0] == 422
    mail = await hub.ingestor.ingest(
        InboundContact(Channel.EMAIL, "a@example.org", text="hi", provider_id="<m1>")
    )
    status, err = await api.call(
        "POST", f"/api/v1/conversations/{mail.conversation_id}/reply", "agent", json={"text": "x"}
    )
    assert (status, err["detail"]) == (422, "replies on email conversations are not configured")
    assert await outbox_row(hub) is None
    assert fake.requests == []


async def test_with_sms_disabled_there_is_no_status_webhook_and_no_reply(
    db_url: str, db: Database
) -> None:
    hub = Hub(make_settings(db_url))
    await hub.start()
    try:
        from aiohttp.test_utils import TestClient, TestServer

        from hub.web.app import create_app
        from tests.support.api import make_users

        tokens, _ = await make_users(hub)
        _, conv_id = await sms_conversation(hub)
        async with TestClient(TestServer(create_app(hub, manage_hub=False))) as client:
            resp = await client.post(
                "/webhooks/twilio/sms/status", data={"MessageSid": "SM1", "MessageStatus": "sent"}
            )
            assert resp.status == 404
            resp = await client.post(
                f"/api/v1/conversations/{conv_id}/reply",
                json={"text": "hi"},
                headers={"Authorization": f"Bearer {tokens['agent']}"},
            )
            assert (resp.status, (await resp.json())["detail"]) == (
                422,
                "replies on sms conversations are not configured",
            )
        assert hub.senders == {}
    finally:
        await hub.stop()


async def test_a_stop_by_sms_blocks_replies_until_start(
    api: Api, hub: Hub, fake: TwilioFake
) -> None:
    """The inbound keyword step and the outbound consent check agree on one consent record."""
    _, conv_id = await sms_conversation(hub)
    path = f"/api/v1/conversations/{conv_id}/reply"
    await hub.ingestor.ingest(
        InboundContact(Channel.SMS, CUSTOMER, recipient=FROM, text=" stopp ", provider_id="SMs")
    )
    assert (await api.call("POST", path, "agent", json={"text": "Hallo"}))[0] == 409
    await hub.ingestor.ingest(
        InboundContact(Channel.SMS, CUSTOMER, recipient=FROM, text="START", provider_id="SMg")
    )
    assert (await api.call("POST", path, "agent", json={"text": "Hallo"}))[0] == 202
    await eventually(lambda: outbox_row(hub, "sent"))
    assert [r.form["Body"] for r in fake.requests] == ["Hallo"]
