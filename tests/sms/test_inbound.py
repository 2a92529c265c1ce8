"""POST /webhooks/twilio/sms end to end: signature, parsing, ingest, TwiML."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from channels.base import Channel
from channels.sms.config import SmsConfig
from hub.ingest.pipeline import IngestUnavailable
from hub.runtime import Hub
from hub.store.db import Database
from hub.store.models import Attachment, Consent, Customer, Identity, Interaction, Team
from tests.support.sms import (
    PATH,
    PUBLIC,
    count,
    post_signed,
    rows,
    signature_of,
    sms_client,
    twilio_form,
)

EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response />'
CONFIG = SmsConfig()


def message(text: str) -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?><Response><Message>{text}</Message></Response>'


@pytest.fixture
async def client(db_url: str, db: Database) -> AsyncIterator[TestClient[Any, Any]]:
    async with sms_client(db_url) as (test_client, _):
        yield test_client


async def nothing_stored(db: Database) -> bool:
    return (await count(db, Interaction), await count(db, Customer)) == (0, 0)


async def test_valid_request_is_stored_and_answered_with_empty_twiml(
    client: TestClient[Any, Any], db: Database
) -> None:
    resp = await post_signed(client, twilio_form("SMok", "Hallo 👋"))
    assert (resp.status, resp.content_type, await resp.text()) == (200, "text/xml", EMPTY)
    [(customer_id, kind, team)] = await rows(
        db, select(Customer.id, Customer.kind, Team.name).join(Team, Team.id == Customer.team_id)
    )
    assert (kind, team) == ("lead", "Sales")  # To is the Sales line in teams.by_address
    assert await rows(db, select(Identity.customer_id, Identity.value)) == [
        (customer_id, "+4917155500001")
    ]
    [(direction, channel, pid, sender, recipient, text, meta)] = await rows(
        db,
        select(
            Interaction.direction,
            Interaction.channel,
            Interaction.provider_id,
            Interaction.sender,
            Interaction.recipient,
            Interaction.text,
            Interaction.meta,
        ),
    )
    assert (direction, channel, pid, sender, recipient, text) == (
        "in",
        "sms",
        "SMok",
        "+4917155500001",
        "+49305550100",
        "Hallo 👋",
    )
    assert meta["twilio"]["AccountSid"] == "AC" + "0" * 32


@pytest.mark.parametrize(
    "headers",
    [
        {},  # missing
        {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"},  # wrong
        {"X-Twilio-Signature": signature_of(twilio_form(), token="other-token")},
        {"X-Twilio-Signature": signature_of(twilio_form(body="other text"))},  # tampered
        {"X-Twilio-Signature": signature_of(twilio_form(), url="http://other.example" + PATH)},
    ],
    ids=["missing", "garbage", "other-token", "tampered-body", "other-url"],
)
async def test_bad_signature_is_refused_and_nothing_stored(
    client: TestClient[Any, Any], db: Database, headers: dict[str, str]
) -> None:
    resp = await client.post(PATH, data=twilio_form(), headers=headers)
    body = await resp.json()
    assert (resp.status, body["error"]) == (403, "forbidden")
    assert body["detail"] == (
        "missing X-Twilio-Signature" if not headers else "X-Twilio-Signature does not match"
    )
    assert await nothing_stored(db)


async def test_extra_unknown_parameters_are_signed_over_and_kept(
    client: TestClient[Any, Any], db: Database
) -> None:
    form = twilio_form("SMx", AddOns='{"status":"successful"}', SomethingNew="42")
    resp = await post_signed(client, form)
    assert resp.status == 200
    [(meta,)] = await rows(db, select(Interaction.meta))
    assert (meta["twilio"]["AddOns"], meta["twilio"]["SomethingNew"]) == (
        '{"status":"successful"}',
        "42",
    )


async def test_query_string_is_part_of_the_signed_url(
    client: TestClient[Any, Any], db: Database
) -> None:
    form = twilio_form("SMq")
    url = PUBLIC + PATH + "?line=berlin"
    assert (await post_signed(client, form, url=url, path=PATH + "?line=berlin")).status == 200
    assert (await post_signed(client, twilio_form("SMq2"), path=PATH + "?x=1")).status == 403
    assert await count(db, Interaction) == 1


async def test_messaging_service_number(client: TestClient[Any, Any], db: Database) -> None:
    # A number in a Messaging Service: Twilio posts to the URL configured on
    # the service (our public URL) and adds the service's SID.
    service = "MG" + "5" * 32
    form = twilio_form("SMsvc", To="+49 30 5550100", MessagingServiceSid=service)
    resp = await post_signed(client, form)
    assert resp.status == 200
    [(meta, team)] = await rows(
        db,
        select(Interaction.meta, Team.name)
        .join(Customer, Customer.id == Interaction.customer_id)
        .join(Team, Team.id == Customer.team_id),
    )
    assert (meta["twilio"]["MessagingServiceSid"], team) == (service, "Sales")


async def test_unknown_sender_to_other_number_is_lead_of_default_team(
    client: TestClient[Any, Any], db: Database
) -> None:
    resp = await post_signed(client, twilio_form("SMd", To="+498912345678"))
    assert resp.status == 200
    assert await rows(
        db, select(Customer.kind, Team.name).join(Team, Team.id == Customer.team_id)
    ) == [("lead", "Support")]


async def test_behind_a_trusted_proxy_the_forwarded_url_is_checked(
    db_url: str, db: Database
) -> None:
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "crm.example.com"}
    seen = "https://crm.example.com" + PATH
    async with sms_client(db_url, trust_proxy=True, public_url="http://10.0.0.5:8080") as (c, _):
        assert (
            await post_signed(c, twilio_form("SMp1"), url=seen, headers=forwarded)
        ).status == 200
        # Without the headers, the configured public URL is the one checked.
        plain = await post_signed(c, twilio_form("SMp2"), url="http://10.0.0.5:8080" + PATH)
        assert plain.status == 200
    assert await count(db, Interaction) == 2


async def test_forwarded_headers_are_ignored_unless_the_proxy_is_trusted(
    client: TestClient[Any, Any], db: Database
) -> None:
    forged = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}
    # Signed for the forged URL (someone who knows the token for another URL):
    # the headers must not move the checked URL there.
    resp = await post_signed(
        client, twilio_form("SMf1"), url="https://evil.example" + PATH, headers=forged
    )
    assert resp.status == 403
    # Signed for the configured URL: the forged headers change nothing.
    assert (await post_signed(client, twilio_form("SMf2"), headers=forged)).status == 200
    assert await rows(db, select(Interaction.provider_id)) == [("SMf2",)]


async def test_same_message_sid_concurrently_gives_one_interaction_and_one_answer(
    client: TestClient[Any, Any], db: Database
) -> None:
    form = twilio_form("SMdup", "STOP")
    first, second = await asyncio.gather(post_signed(client, form), post_signed(client, form))
    answers = [(r.status, await r.text()) for r in (first, second)]
    assert answers == [(200, message(CONFIG.opt_out_text))] * 2
    # ... and a later retry by Twilio gets the same answer again.
    retry = await post_signed(client, form)
    assert (retry.status, await retry.text()) == (200, message(CONFIG.opt_out_text))
    assert (await count(db, Interaction), await count(db, Consent)) == (1, 1)


KEYWORD_CASES = [
    *[(w, "opted_out", CONFIG.opt_out_text) for w in CONFIG.keywords.opt_out],
    *[(w, "opted_in", CONFIG.opt_in_text) for w in CONFIG.keywords.opt_in],
    ("  stopp ", "opted_out", CONFIG.opt_out_text),
    ("Abmelden", "opted_out", CONFIG.opt_out_text),
    ("abmelden\n", "opted_out", CONFIG.opt_out_text),
    ("Start", "opted_in", CONFIG.opt_in_text),
]


@pytest.mark.parametrize(("body", "state", "answer"), KEYWORD_CASES)
async def test_consent_keywords(
    client: TestClient[Any, Any], db: Database, body: str, state: str, answer: str
) -> None:
    resp = await post_signed(client, twilio_form("SMkw", body))
    assert (resp.status, await resp.text()) == (200, message(answer))
    [(customer_id, meta)] = await rows(db, select(Interaction.customer_id, Interaction.meta))
    word = body.strip().upper()
    assert (meta["keyword"], meta["reply"]) == (word, answer)
    [(c_customer, channel, purpose, c_state, source, recorded_at)] = await rows(
        db,
        select(
            Consent.customer_id,
            Consent.channel,
            Consent.purpose,
            Consent.state,
            Consent.source,
            Consent.recorded_at,
        ),
    )
    [(occurred_at,)] = await rows(db, select(Interaction.occurred_at))
    assert (c_customer, channel, purpose, c_state, source, recorded_at) == (
        customer_id,
        "sms",
        "marketing",
        state,
        f"sms keyword {word}",
        occurred_at,
    )


@pytest.mark.parametrize("body", [*CONFIG.keywords.help, " help ", "Info"])
async def test_help_answers_without_consent_change(
    client: TestClient[Any, Any], db: Database, body: str
) -> None:
    resp = await post_signed(client, twilio_form("SMhelp", body))
    assert (resp.status, await resp.text()) == (200, message(CONFIG.help_text))
    assert await count(db, Consent) == 0
    [(meta,)] = await rows(db, select(Interaction.meta))
    assert meta["keyword"] == body.strip().upper()


async def test_start_after_stop_leaves_the_newest_consent_opted_in(
    client: TestClient[Any, Any], db: Database
) -> None:
    assert (await post_signed(client, twilio_form("SM1", "STOP"))).status == 200
    assert (await post_signed(client, twilio_form("SM2", "start"))).status == 200
    consents = await rows(
        db, select(Consent.state, Consent.source).order_by(Consent.recorded_at, Consent.id)
    )
    assert consents == [("opted_out", "sms keyword STOP"), ("opted_in", "sms keyword START")]
    # Both keyword messages are in the history, in one conversation.
    convs = await rows(db, select(Interaction.conversation_id, Interaction.text))
    assert len({c for c, _ in convs}) == 1 and [t for _, t in convs] == ["STOP", "start"]


async def test_media_are_recorded_as_attachment_references(
    client: TestClient[Any, Any], db: Database
) -> None:
    base = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM9/Media/"
    form = twilio_form(
        "MM9",
        "two pictures",
        NumMedia="2",
        MediaUrl0=base + "ME01",
        MediaContentType0="image/png",
        MediaUrl1=base + "ME02",
        MediaContentType1="image/gif",
    )
    assert (await post_signed(client, form)).status == 200
    [(iid,)] = await rows(db, select(Interaction.id))
    assert await rows(
        db,
        select(
            Attachment.interaction_id,
            Attachment.filename,
            Attachment.content_type,
            Attachment.size,
            Attachment.url,
        ).order_by(Attachment.id),
    ) == [
        (iid, "ME01.png", "image/png", None, base + "ME01"),
        (iid, "ME02.gif", "image/gif", None, base + "ME02"),
    ]


async def test_body_over_1600_characters_is_413_and_nothing_stored(
    client: TestClient[Any, Any], db: Database
) -> None:
    resp = await post_signed(client, twilio_form("SMlong", "x" * 1601))
    assert resp.status == 413
    assert (await resp.json())["error"] == "payload_too_large"
    assert await nothing_stored(db)
    assert (await post_signed(client, twilio_form("SMmax", "ü" * 1600))).status == 200


async def test_request_over_the_size_limit_is_413(db_url: str, db: Database) -> None:
    async with sms_client(db_url, server={"max_body_bytes": 2048}) as (c, _):
        resp = await post_signed(c, twilio_form("SMbig", "x", Padding="p" * 4000))
        assert resp.status == 413
        assert (await resp.json())["error"] == "payload_too_large"
    assert await nothing_stored(db)


async def test_not_form_encoded_is_415(client: TestClient[Any, Any], db: Database) -> None:
    resp = await client.post(PATH, json=twilio_form(), headers={"X-Twilio-Signature": "x"})
    assert (resp.status, (await resp.json())["error"]) == (415, "unsupported_media_type")
    assert await nothing_stored(db)


async def test_signed_but_unusable_form_is_400(client: TestClient[Any, Any], db: Database) -> None:
    form = {k: v for k, v in twilio_form().items() if k not in ("MessageSid", "SmsSid")}
    form.pop("SmsMessageSid")
    resp = await post_signed(client, form)
    assert (resp.status, await resp.json()) == (
        400,
        {"error": "bad_request", "detail": "MessageSid is missing"},
    )
    assert await nothing_stored(db)


async def test_disabled_channel_is_404(db_url: str, db: Database) -> None:
    async with sms_client(db_url, enabled=False) as (c, _):
        resp = await post_signed(c, twilio_form())
        assert (resp.status, (await resp.json())["error"]) == (404, "not_found")
    assert await nothing_stored(db)


async def test_no_auth_token_refuses_everything(db_url: str, db: Database) -> None:
    async with sms_client(db_url, auth_token="") as (c, _):
        resp = await post_signed(c, twilio_form(), token="")
        assert resp.status == 403
        assert "no Twilio auth token configured" in (await resp.json())["detail"]
    assert await nothing_stored(db)


async def test_database_outage_is_503(db_url: str, db: Database) -> None:
    async def unavailable(contact: object) -> None:
        raise IngestUnavailable("database unavailable; retry")

    async with sms_client(db_url) as (c, hub):
        hub.ingestor.ingest = unavailable  # type: ignore[method-assign,assignment]
        resp = await post_signed(c, twilio_form())
        assert (resp.status, resp.headers["Retry-After"], await resp.json()) == (
            503,
            "1",
            {"error": "unavailable", "detail": "database unavailable; retry"},
        )


async def test_hub_routes_sms_keywords_by_default(hub: Hub) -> None:
    assert {c: [s.name for s in steps] for c, steps in hub.pipelines.items()} == {
        Channel.EMAIL: [
            "email_bounce",
            "email_autoreply",
            "email_loop_guard",
            "email_unsubscribe",
            "thread_conversation",
        ],
        Channel.SMS: ["sms_keywords", "thread_conversation"],
        Channel.PHONE: ["thread_conversation"],
    }
