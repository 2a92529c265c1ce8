"""The email reply tests' hub: one mailbox sending through the real aiosmtpd fixture
(a second one, "sales", for tests that ask for `sales_smtp`), no background dispatcher."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from hub.config import Settings
from hub.runtime import Hub
from hub.store.db import Database
from tests.support.email_outbound import MAX_ATTEMPTS, SALES, SECRET, SUPPORT, mailbox_config
from tests.support.hubs import make_settings, manual_dispatch
from tests.support.smtp_server import SmtpServer


@pytest.fixture
def sales_smtp() -> Iterator[SmtpServer]:
    """A second relay: tests that ask for it get a "sales" mailbox sending through it."""
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def bounce_envelope() -> str:
    """Tests that ask for it send with this envelope sender (smtp.from_address)."""
    return "bounces@example.com"


@pytest.fixture
def settings(db_url: str, smtp_server: SmtpServer, request: pytest.FixtureRequest) -> Settings:
    mailboxes = [mailbox_config("support", SUPPORT, smtp_server)]
    if "bounce_envelope" in request.fixturenames:
        mailboxes[0]["smtp"]["from_address"] = request.getfixturevalue("bounce_envelope")
    if "sales_smtp" in request.fixturenames:
        sales: SmtpServer = request.getfixturevalue("sales_smtp")
        mailboxes.append(mailbox_config("sales", SALES, sales))
        mailboxes.append(mailbox_config("info", "info@example.com", None))  # reads only
    return make_settings(
        db_url,
        email={"mailboxes": mailboxes, "reply_token_secret": SECRET},
        outbox={"retry_base_seconds": 30, "max_attempts": MAX_ATTEMPTS},
    )


@pytest.fixture
async def hub(settings: Settings, db: Database) -> AsyncIterator[Hub]:
    async with manual_dispatch(settings) as running:
        yield running
