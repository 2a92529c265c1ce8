"""Agent replies by SMS end to end: API -> outbox -> dispatcher -> real twilio -> fake Twilio.

Retries are made fast through config (outbox.retry_base_seconds), and tests
wait for outcomes by polling the database in a bounded loop, never by
sleeping a fixed time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from sqlmodel import col, select
from twilio.request_validator import RequestValidator

from channels.base import Channel, DeliveryResult, InboundContact, OutboundMessage
from hub.config import Settings
from hub.db import Database
from hub.dispatcher import Dispatcher, senders_from
from hub.models import Consent, Interaction, OutboxMessage, utcnow
from hub.outbox import enqueue
from hub.runtime import Hub
from hub.tables import outbox_t
from tests.api_helpers import Api
from tests.conftest import make_settings
from tests.twilio_fake import ACCOUNT_SID, TwilioFake, twilio_fake

T = TypeVar("T")
TOKEN = "status-token"
PUBLIC = "https://crm.example.com"
FROM = "+4930555000"
CUSTOMER = "+4917155500001"
MAX_ATTEMPTS = 3


@pytest.fixture
async def fake() -> AsyncIterator[TwilioFake]:
    async with twilio_fake() as running:
        yield running


@pytest.fixture
def settings(db_url: str, fake: TwilioFake) -> Settings:
    return make_settings(
        db_url,
        sms={
            "enabled": True,
            "account_sid": ACCOUNT_SID,
            "auth_token": TOKEN,
            "from_number": FROM,
            "public_url": PUBLIC,
            "api_base_url": fake.base_url,
            "rate_per_second": 1000,
        },
        outbox={
            "poll_seconds": 0.02,
            "retry_base_seconds": 0.01,
            "retry_max_seconds": 0.05,
            "max_attempts": MAX_ATTEMPTS,
        },
    )


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


async def test_status_callbacks_only_move_forward(api: Api, hub: Hub, fake: TwilioFake) -> None:
    _, conv_id = await sms_conversation(hub)
    _, body = await api.call("POST", f"/api/v1/conversations/{conv_id}/reply", json={"text": "a"})
    row = await eventually(lambda: outbox_row(hub, "sent"))
    assert row.provider_id is not None
    seen = []
    for status in ("sending", "sent", "delivered", "sent", "queued"):
        params = {"MessageSid": row.provider_id, "MessageStatus": status, "AccountSid": ACCOUNT_SID}
        assert await post_status(api, params, f"?outbox={row.id}") == 204
        seen.append((await interaction(hub, body["id"])).delivery_status)
    assert seen == ["sending", "sent", "delivered", "delivered", "delivered"]
    # A failure is final: a late "delivered" does not undo it.
    params = {"MessageSid": row.provider_id, "MessageStatus": "undelivered", "ErrorCode": "30003"}
    assert await post_status(api, params) == 204
    params = {"MessageSid": row.provider_id, "MessageStatus": "delivered"}
    assert await post_status(api, params) == 204
    final = await interaction(hub, body["id"])
    assert (final.delivery_status, final.meta["error_code"]) == ("undelivered", "30003")
    failed = await outbox_row(hub)
    assert failed is not None
    assert (failed.status, failed.provider_status) == ("failed", "undelivered")


async def test_a_report_that_overtakes_our_record_still_matches(api: Api, hub: Hub) -> None:
    customer_id, conv_id = await sms_conversation(hub)
    async with hub.db.write() as s:  # queued, but the dispatcher has not recorded a sid
        queued = await enqueue(
            await s.connection(),
            customer_id=customer_id,
            conversation_id=conv_id,
            channel=Channel.SMS,
            sender=FROM,
            recipient=CUSTOMER,
            body="x",
            author_id=None,
        )
        conn = await s.connection()
        await conn.execute(outbox_t.update().values(status="sending", claimed_at=utcnow()))
    params = {"MessageSid": "SMearly", "MessageStatus": "delivered"}
    assert await post_status(api, params, f"?outbox={queued.outbox_id}") == 204
    found = await interaction(hub, queued.interaction_id)
    assert (found.provider_id, found.delivery_status) == ("SMearly", "delivered")


async def test_status_callbacks_must_be_signed(api: Api, hub: Hub) -> None:
    _, conv_id = await sms_conversation(hub)
    _, body = await api.call("POST", f"/api/v1/conversations/{conv_id}/reply", json={"text": "a"})
    row = await eventually(lambda: outbox_row(hub, "sent"))
    assert row.provider_id is not None
    params = {"MessageSid": row.provider_id, "MessageStatus": "delivered"}
    assert await post_status(api, params, unsigned=True) == 403
    assert await post_status(api, params, token="wrong-token") == 403
    # Signed over other parameters than the ones posted.
    path = "/webhooks/twilio/sms/status"
    sig = RequestValidator(TOKEN).compute_signature(PUBLIC + path, params)
    resp = await api.client.post(
        path, data={**params, "ErrorCode": "1"}, headers={"X-Twilio-Signature": sig}
    )
    assert resp.status == 403
    assert (await interaction(hub, body["id"])).delivery_status == "queued"
    # Unknown MessageSid: acknowledged, so that Twilio does not retry forever.
    assert await post_status(api, {"MessageSid": "SMnope", "MessageStatus": "sent"}) == 204
    assert await post_status(api, {"MessageSid": "SMnope"}) == 400


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


async def test_an_opt_out_after_queuing_blocks_the_send(
    api: Api, hub: Hub, fake: TwilioFake
) -> None:
    customer_id, conv_id = await sms_conversation(hub)
    async with hub.db.write() as s:  # queued and opted out in one go: the dispatcher decides
        queued = await enqueue(
            await s.connection(),
            customer_id=customer_id,
            conversation_id=conv_id,
            channel=Channel.SMS,
            sender=FROM,
            recipient=CUSTOMER,
            body="Angebot",
            author_id=None,
        )
        s.add(Consent(customer_id=customer_id, channel="sms", state="opted_out", source="STOP"))
    hub.dispatcher.wake()
    row = await eventually(lambda: outbox_row(hub, "blocked"))
    assert (row.attempts, row.last_error) == (0, "recipient opted out of SMS")
    assert (await interaction(hub, queued.interaction_id)).delivery_status == "blocked"
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


async def test_a_claim_whose_lease_expired_is_sent_again(
    api: Api, hub: Hub, fake: TwilioFake
) -> None:
    customer_id, conv_id = await sms_conversation(hub)
    async with hub.db.write() as s:  # a node claimed it, then died before sending
        await enqueue(
            await s.connection(),
            customer_id=customer_id,
            conversation_id=conv_id,
            channel=Channel.SMS,
            sender=FROM,
            recipient=CUSTOMER,
            body="x",
            author_id=None,
        )
        stale = utcnow() - timedelta(seconds=hub.settings.outbox.lease_seconds + 1)
        conn = await s.connection()
        await conn.execute(outbox_t.update().values(status="sending", claimed_at=stale, attempts=1))
    hub.dispatcher.wake()
    row = await eventually(lambda: outbox_row(hub, "sent"))
    assert (row.attempts, len(fake.requests)) == (2, 1)


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


async def test_several_dispatchers_send_each_row_once(
    api: Api, hub: Hub, fake: TwilioFake, settings: Settings
) -> None:
    """Nodes sharing one database: FOR UPDATE SKIP LOCKED (PostgreSQL) or the single
    SQLite writer means no row is claimed twice, however the rounds interleave."""
    customer_id, conv_id = await sms_conversation(hub)
    async with hub.db.write() as s:
        conn = await s.connection()
        for n in range(30):
            await enqueue(
                conn,
                customer_id=customer_id,
                conversation_id=conv_id,
                channel=Channel.SMS,
                sender=FROM,
                recipient=CUSTOMER,
                body=f"m{n}",
                author_id=None,
            )
    config = settings.outbox.model_copy(update={"batch_size": 3})
    nodes = [Dispatcher(Database(settings.database), config, senders_from(settings)) for _ in "ab"]
    try:
        for _ in range(100):
            handled = await asyncio.gather(*(node.run_once() for node in nodes))
            if sum(handled) == 0 and await outbox_row(hub, "queued") is None:
                break
        sent = await eventually(lambda: _all_sent(hub, 30))
    finally:
        for node in nodes:
            await node.stop()
            await node.db.close()
    bodies = sorted(r.form["Body"] for r in fake.requests)
    assert bodies == sorted(f"m{n}" for n in range(30))  # each once: no duplicates
    assert sent == 30


async def _all_sent(hub: Hub, expected: int) -> int | None:
    async with hub.db.read() as s:
        rows = (await s.exec(select(OutboxMessage.status, OutboxMessage.attempts))).all()
    done = [r for r in rows if r == ("sent", 1)]
    return len(done) if len(done) == expected else None


async def test_with_sms_disabled_there_is_no_status_webhook_and_no_reply(
    db_url: str, db: Database
) -> None:
    hub = Hub(make_settings(db_url))
    await hub.start()
    try:
        from aiohttp.test_utils import TestClient, TestServer

        from hub.web.app import create_app
        from tests.api_helpers import make_users

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


async def test_stopping_gives_back_claims_it_did_not_send(
    api: Api, hub: Hub, fake: TwilioFake, settings: Settings
) -> None:
    customer_id, conv_id = await sms_conversation(hub)
    await hub.dispatcher.stop()  # this test drives its own dispatcher
    async with hub.db.write() as s:
        conn = await s.connection()
        for n in range(3):
            await enqueue(
                conn,
                customer_id=customer_id,
                conversation_id=conv_id,
                channel=Channel.SMS,
                sender=FROM,
                recipient=CUSTOMER,
                body=f"m{n}",
                author_id=None,
            )
    real = senders_from(settings)["sms"]
    node = Dispatcher(Database(settings.database), settings.outbox, {"sms": real})

    class StopAfterOne:
        """The real sender; the node is told to stop while the first message is out."""

        channel, max_body_length, rate_per_second = real.channel, 1600, 1000.0
        sender = real.sender
        close = real.close

        async def send(self, message: OutboundMessage) -> DeliveryResult:
            node._stopping = True
            return await real.send(message)

    node.senders = {"sms": StopAfterOne()}
    try:
        assert await node.run_once() == 3
    finally:
        await node.stop()
        await node.db.close()
    async with hub.db.read() as s:
        rows = (
            await s.exec(
                select(OutboxMessage.body, OutboxMessage.status, OutboxMessage.attempts).order_by(
                    col(OutboxMessage.id)
                )
            )
        ).all()
    assert rows == [("m0", "sent", 1), ("m1", "queued", 0), ("m2", "queued", 0)]
    assert [r.form["Body"] for r in fake.requests] == ["m0"]


def test_a_round_never_claims_more_than_the_rate_sends_within_the_lease(
    settings: Settings,
) -> None:
    slow = settings.model_copy(
        update={"sms": settings.sms.model_copy(update={"rate_per_second": 0.01})}
    )
    assert Dispatcher(Database(slow.database), slow.outbox, senders_from(slow)).batch_size == 1
    fast = Dispatcher(Database(settings.database), settings.outbox, senders_from(settings))
    assert fast.batch_size == settings.outbox.batch_size == 20
