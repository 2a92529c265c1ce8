"""Twilio delivery status callbacks: signed, matched, and never moving a status backwards."""

from __future__ import annotations

from twilio.request_validator import RequestValidator

from hub.runtime import Hub
from hub.store.models import utcnow
from hub.store.tables import outbox_t
from tests.support.api import Api
from tests.support.sms_outbound import (
    CUSTOMER,
    FROM,
    PUBLIC,
    TOKEN,
    eventually,
    interaction,
    outbox_row,
    post_status,
    queue,
    sms_conversation,
)
from tests.support.twilio_fake import ACCOUNT_SID, TwilioFake


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
        [queued] = await queue(await s.connection(), customer_id, conv_id, "x")
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
    # The same check, in the same words, as the inbound webhook's.
    assert (await resp.json())["detail"] == "X-Twilio-Signature does not match"
    assert (await interaction(hub, body["id"])).delivery_status == "queued"
    # Unknown MessageSid: acknowledged, so that Twilio does not retry forever.
    assert await post_status(api, {"MessageSid": "SMnope", "MessageStatus": "sent"}) == 204
    assert await post_status(api, {"MessageSid": "SMnope"}) == 400


async def test_the_console_hears_of_the_reply_and_each_status_change(
    api: Api, hub: Hub, fake: TwilioFake
) -> None:
    customer_id, conv_id = await sms_conversation(hub)
    fake.fail_next(1, 400, 21610)
    async with hub.bus.subscribe() as events:
        _, body = await api.call(
            "POST", f"/api/v1/conversations/{conv_id}/reply", json={"text": "a"}
        )
        await eventually(lambda: outbox_row(hub, "failed"))
        seen = [events.get_nowait() for _ in range(events.qsize())]
    common = {"interaction_id": body["id"], "customer_id": customer_id, "conversation_id": conv_id}
    assert [(e.kind, e.data, e.team_id) for e in seen] == [
        (
            "interaction.created",
            {
                **common,
                "channel": "sms",
                "direction": "out",
                "sender": FROM,
                "recipient": CUSTOMER,
                "subject": "",
                "delivery_status": "queued",
                "created_customer": False,
            },
            api.team_ids["Support"],
        ),
        (
            "interaction.delivery",
            {**common, "delivery_status": "failed", "error_code": "21610"},
            api.team_ids["Support"],
        ),
    ]


async def test_a_status_callback_is_published_once_when_it_changes_something(
    api: Api, hub: Hub
) -> None:
    _, conv_id = await sms_conversation(hub)
    _, body = await api.call("POST", f"/api/v1/conversations/{conv_id}/reply", json={"text": "a"})
    row = await eventually(lambda: outbox_row(hub, "sent"))
    assert row.provider_id is not None
    async with hub.bus.subscribe() as events:
        for status in ("delivered", "sent"):
            params = {"MessageSid": row.provider_id, "MessageStatus": status}
            assert await post_status(api, params) == 204
        seen = [events.get_nowait() for _ in range(events.qsize())]
    assert [(e.kind, e.data["delivery_status"]) for e in seen] == [
        ("interaction.delivery", "delivered")
    ]
    assert seen[0].data["interaction_id"] == body["id"]
