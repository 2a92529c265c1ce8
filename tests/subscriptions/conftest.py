"""A hub with one mailbox sending through the real aiosmtpd fixture, signed links on,
no background dispatcher (tests run the outbox rounds themselves)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from hub.config import Settings
from hub.runtime import Hub
from hub.store.db import Database
from tests.support.email_outbound import SECRET, SUPPORT, mailbox_config
from tests.support.hubs import make_settings, manual_dispatch
from tests.support.smtp_server import SmtpServer

TOKEN_KEY = "test-subscription-key-0123456789"
PUBLIC_URL = "https://crm.example.com"


@pytest.fixture
def settings(db_url: str, smtp_server: SmtpServer) -> Settings:
    return make_settings(
        db_url,
        server={"public_url": PUBLIC_URL},
        email={
            "mailboxes": [mailbox_config("support", SUPPORT, smtp_server)],
            "reply_token_secret": SECRET,
        },
        subscriptions={
            "token_key": TOKEN_KEY,
            "unsubscribe_address": "unsubscribe@example.com",
            "signup_per_hour": 5,
        },
    )


@pytest.fixture
async def hub(settings: Settings, db: Database) -> AsyncIterator[Hub]:
    async with manual_dispatch(settings) as running:
        yield running
