"""The hourly window per email sender (outbox.max_per_hour "email:<mailbox>"): one
mailbox's window full leaves the other mailboxes sending; counted, not timed."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.config import ConfigError, Settings, load_settings
from hub.runtime import Hub
from tests.support.api import Api
from tests.support.email_outbound import inbound_email, reply_as
from tests.support.hubs import drain_outbox
from tests.support.smtp_server import SmtpServer


async def test_a_full_sender_window_holds_that_mailbox_only(
    api: Api, hub: Hub, settings: Settings, smtp_server: SmtpServer, sales_smtp: SmtpServer
) -> None:
    await hub.dispatcher.stop()  # this test drives its own nodes
    for n in range(3):
        _, conv = await inbound_email(hub, f"<s{n}@c.example>", sender=f"s{n}@c.example",
                                      mailbox="sales")  # fmt: skip
        assert (await reply_as(api, conv, as_="admin"))[0] == 202
        _, conv = await inbound_email(hub, f"<u{n}@c.example>", sender=f"u{n}@c.example",
                                      mailbox="support")  # fmt: skip
        assert (await reply_as(api, conv, as_="admin"))[0] == 202

    assert await drain_outbox(settings, {"email:sales": 2}) == 5
    assert sorted(r.rcpt_tos[0] for r in sales_smtp.received) == ["s0@c.example", "s1@c.example"]
    assert sorted(r.rcpt_tos[0] for r in smtp_server.received) == [
        "u0@c.example",
        "u1@c.example",
        "u2@c.example",
    ]
    # The window is read from the database: a restarted node still holds the third.
    assert await drain_outbox(settings, {"email:sales": 2}) == 0
    assert len(sales_smtp.received) == 2
    # A wider window lets it go.
    assert await drain_outbox(settings, {"email:sales": 3}) == 1
    assert [r.rcpt_tos[0] for r in sales_smtp.received][-1] == "s2@c.example"


@pytest.mark.parametrize(
    ("window", "reason"),
    [
        ({"email:nope": 5}, "'email:nope' names no mailbox of email.mailboxes"),
        ({"fax": 5}, "'fax': a key is 'email', 'sms' or 'email:<mailbox name>'"),
        ({"email": 0}, "'email': at least 1 per hour"),
    ],
)
def test_a_window_must_name_a_channel_or_a_configured_mailbox(
    tmp_path: Path, window: dict[str, int], reason: str
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "email:\n  mailboxes:\n    - {name: support, address: s@example.com}\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError) as error:
        load_settings(
            cfg,
            outbox={"max_per_hour": window},
            email={"reply_token_secret": "window-test-secret-0123456789"},
        )
    assert reason in str(error.value)
