"""Campaign tests' hub: an email mailbox sending into the real aiosmtpd sink, SMS against
the Twilio fake, signed unsubscribe links, no background dispatcher and no scheduler
(tests run expansion, outbox rounds and the watch themselves, so counts are exact)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from hub.config import Settings
from hub.runtime import Hub
from hub.store.db import Database
from tests.support.api import Api
from tests.support.email_outbound import SECRET, SUPPORT, mailbox_config
from tests.support.hubs import make_settings, manual_dispatch
from tests.support.smtp_server import SmtpServer
from tests.support.twilio_fake import ACCOUNT_SID, TwilioFake, twilio_fake

TOKEN_KEY = "campaign-test-key-0123456789"
PUBLIC_URL = "https://crm.example.com"
ALWAYS = {"start": "00:00", "end": "23:59"}  # quiet hours that never hold a message back

EMAIL_TEMPLATE = {
    "name": "spring",
    "channel": "email",
    "locale": "de",
    "subject": "Frühling bei uns, {{ name }}",
    "html": "<p>Ihr Code: {{ custom.code }}</p><p><a href='{{ unsubscribe_url }}'>Abmelden</a></p>",
    "text": "Ihr Code: {{ custom.code }}\nAbmelden: {{ unsubscribe_url }}",
}
SMS_TEMPLATE = {
    "name": "sms-spring",
    "channel": "sms",
    "locale": "de",
    "body": "Hallo {{ name }}, 10% bis Sonntag. STOP zum Abmelden",
}


@pytest.fixture
async def fake() -> AsyncIterator[TwilioFake]:
    async with twilio_fake() as running:
        yield running


def campaign_settings(
    db_url: str, smtp: SmtpServer, fake: TwilioFake, **campaigns: Any
) -> Settings:
    return make_settings(
        db_url,
        server={"public_url": PUBLIC_URL},
        email={
            "mailboxes": [mailbox_config("support", SUPPORT, smtp)],
            "reply_token_secret": SECRET,
        },
        sms={
            "enabled": True,
            "account_sid": ACCOUNT_SID,
            "auth_token": "campaign-sms-token",
            "from_number": "+4930555000",
            "public_url": "http://127.0.0.1",
            "api_base_url": fake.base_url,
            "rate_per_second": 1000,
        },
        subscriptions={"token_key": TOKEN_KEY, "unsubscribe_address": "unsubscribe@example.com"},
        campaigns={"scheduler": False, "quiet_hours": {"sms": ALWAYS}, **campaigns},
    )


@pytest.fixture
def settings(db_url: str, smtp_server: SmtpServer, fake: TwilioFake) -> Settings:
    return campaign_settings(db_url, smtp_server, fake)


@pytest.fixture
async def hub(settings: Settings, db: Database) -> AsyncIterator[Hub]:
    async with manual_dispatch(settings) as running:
        yield running


async def create(api: Api, path: str, body: dict[str, Any], as_: str = "marketing") -> int:
    status, made = await api.call("POST", path, as_, json=body)
    assert status == 201, made
    return int(made["id"])


async def send_all(hub: Hub) -> int:
    """Outbox rounds until nothing is due; how many rows they handled."""
    total = 0
    while n := await hub.dispatcher.run_once():
        total += n
    return total
