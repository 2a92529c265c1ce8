"""Fixtures of the outbox tests: a local Twilio fake, and settings that send to it.

`settings` replaces the root conftest's for this folder, so the `hub` and
`api` fixtures here run with SMS on, pointed at the fake, and fast retries.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from hub.config import Settings
from tests.support.hubs import make_settings
from tests.support.sms_outbound import FROM, MAX_ATTEMPTS, PUBLIC, TOKEN
from tests.support.twilio_fake import ACCOUNT_SID, TwilioFake, twilio_fake


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
