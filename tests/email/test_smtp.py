"""The SMTP sender against a real aiosmtpd server: headers, reuse, 4xx/5xx, refusals, restarts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from email.message import EmailMessage
from typing import Any

import pytest

from channels.base import Channel, DeliveryState, OutboundMessage
from channels.email.smtp import ERROR_BAD_MESSAGE, ERROR_NETWORK, ERROR_NO_UNSUBSCRIBE, SmtpSender
from channels.email.smtp_config import SmtpConfig
from tests.support.smtp_server import SmtpServer


def _config(server: SmtpServer, **overrides: Any) -> SmtpConfig:
    values: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "tls": "none",
        "pool_size": 2,
        "timeout": 10.0,
        "from_address": "crm@example.com",
        "domain": "crm.example.com",
        "local_hostname": "crmhub.test",
    }
    values.update(overrides)
    return SmtpConfig(**values)


@pytest.fixture
async def sender(smtp_server: SmtpServer) -> AsyncIterator[SmtpSender]:
    s = SmtpSender(_config(smtp_server))
    try:
        yield s
    finally:
        await s.close()


def _mail(recipient: str = "kunde@example.org", **kwargs: Any) -> OutboundMessage:
    kwargs.setdefault("subject", "Your order")
    kwargs.setdefault("text", "Hello,\nyour order has shipped.\n")
    return OutboundMessage(channel=Channel.EMAIL, recipient=recipient, **kwargs)


async def test_mail_arrives_with_threading_and_reply_headers(
    sender: SmtpSender, smtp_server: SmtpServer
) -> None:
    result = await sender.send(
        _mail(
            headers={
                "In-Reply-To": "<abc@customer.example>",
                "References": "<root@crm.example.com> <abc@customer.example>",
                "Reply-To": "reply+t0k3n@crm.example.com",
            }
        )
    )
    assert result.state is DeliveryState.SENT
    assert result.provider_id is not None
    assert result.provider_id.endswith("@crm.example.com>")
    [got] = smtp_server.received
    assert got.mail_from == "crm@example.com"
    assert got.rcpt_tos == ["kunde@example.org"]
    msg = got.message
    assert msg["Message-ID"] == result.provider_id
    assert msg["From"] == "crm@example.com"
    assert msg["To"] == "kunde@example.org"
    assert msg["Subject"] == "Your order"
    assert msg["Date"] is not None
    assert msg["In-Reply-To"] == "<abc@customer.example>"
    assert msg["References"] == "<root@crm.example.com> <abc@customer.example>"
    assert msg["Reply-To"] == "reply+t0k3n@crm.example.com"
    assert msg["List-Unsubscribe"] is None
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content() == "Hello,\nyour order has shipped.\n"


async def test_marketing_mail_carries_one_click_unsubscribe(
    sender: SmtpSender, smtp_server: SmtpServer
) -> None:
    result = await sender.send(
        _mail(
            sender="News <news@example.com>",
            metadata={
                "marketing": True,
                "unsubscribe_url": "https://crm.example.com/u/t0k3n",
                "unsubscribe_mailto": "mailto:unsubscribe+t0k3n@crm.example.com",
            },
        )
    )
    assert result.state is DeliveryState.SENT
    msg = smtp_server.received[0].message
    assert msg["From"] == "News <news@example.com>"
    assert smtp_server.received[0].mail_from == "crm@example.com"
    # Folded after the colon on the wire (too long for one line); unfolded it is the pair.
    assert msg["List-Unsubscribe"].strip() == (
        "<https://crm.example.com/u/t0k3n>, <mailto:unsubscribe+t0k3n@crm.example.com>"
    )
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Message-ID"] == result.provider_id


async def test_marketing_mail_without_unsubscribe_is_not_sent(
    sender: SmtpSender, smtp_server: SmtpServer
) -> None:
    result = await sender.send(
        _mail(metadata={"marketing": True, "unsubscribe_url": "https://crm.example.com/u/x"})
    )
    assert result.state is DeliveryState.FAILED
    assert result.error_code == ERROR_NO_UNSUBSCRIBE
    assert smtp_server.received == []


async def test_given_message_id_is_kept_and_own_headers_win(
    sender: SmtpSender, smtp_server: SmtpServer
) -> None:
    result = await sender.send(
        _mail(headers={"Message-ID": "<retry-1@crm.example.com>", "To": "evil@example.net"})
    )
    assert result.provider_id == "<retry-1@crm.example.com>"
    msg = smtp_server.received[0].message
    assert msg["Message-ID"] == "<retry-1@crm.example.com>"
    assert msg.get_all("To") == ["kunde@example.org"]


async def test_header_with_line_break_fails_without_sending(
    sender: SmtpSender, smtp_server: SmtpServer
) -> None:
    result = await sender.send(_mail(subject="Hi\r\nBcc: victim@example.net"))
    assert result.state is DeliveryState.FAILED
    assert result.error_code == ERROR_BAD_MESSAGE
    assert smtp_server.received == []


async def test_umlauts_in_subject_and_body(sender: SmtpSender, smtp_server: SmtpServer) -> None:
    subject = "Grüße aus Köln — Ihre Bestellung"
    body = "Sehr geehrte Frau Müller,\nschöne Grüße, Ihr Straßen-Team: äöüÄÖÜß €\n"
    result = await sender.send(_mail(subject=subject, text=body))
    assert result.state is DeliveryState.SENT
    got = smtp_server.received[0]
    # 7-bit on the wire: encoded words in the header, quoted-printable in the body.
    assert got.data.isascii()
    msg = got.message
    assert msg["Subject"] == subject
    assert msg.get_content_charset() == "utf-8"
    assert msg.get_content() == body


async def test_connections_are_reused_across_sends(
    sender: SmtpSender, smtp_server: SmtpServer
) -> None:
    results = await asyncio.gather(*(sender.send(_mail(f"c{i}@example.org")) for i in range(12)))
    for i in range(6):
        results.append(await sender.send(_mail(f"s{i}@example.org")))
    assert [r.state for r in results] == [DeliveryState.SENT] * 18
    assert len(smtp_server.received) == 18
    assert len({r.provider_id for r in results}) == 18
    assert 1 <= smtp_server.handler.ehlos <= 2
    assert sender.pool.connections_opened == smtp_server.handler.ehlos


async def test_4xx_is_a_temporary_failure_and_nothing_is_delivered(
    sender: SmtpSender, smtp_server: SmtpServer
) -> None:
    smtp_server.handler.answer_data("451 4.3.0 Try again later")
    result = await sender.send(_mail())
    assert result.state is DeliveryState.TEMPORARY_FAILURE
    assert result.error_code == "451"
    assert result.error is not None and "Try again later" in result.error
    assert smtp_server.received == []
    # The retry goes out, on the same connection.
    again = await sender.send(_mail())
    assert again.state is DeliveryState.SENT
    assert len(smtp_server.received) == 1
    assert smtp_server.handler.ehlos == 1


async def test_5xx_is_a_permanent_failure_with_its_code(
    sender: SmtpSender, smtp_server: SmtpServer
) -> None:
    smtp_server.handler.answer_data("554 5.7.1 Rejected as spam")
    result = await sender.send(_mail())
    assert result.state is DeliveryState.FAILED
    assert result.error_code == "554"
    assert result.error is not None and "Rejected as spam" in result.error
    assert smtp_server.received == []


async def test_one_recipient_refused_of_several(
    sender: SmtpSender, smtp_server: SmtpServer
) -> None:
    smtp_server.handler.refuse["gone@example.org"] = "550 5.1.1 No such user"
    msg = sender.build_message(_mail("a@example.org"))
    recipients = ["a@example.org", "gone@example.org", "b@example.org"]
    outcome = await sender.send_mime(msg, recipients)
    assert outcome.state is DeliveryState.SENT
    assert outcome.accepted == ("a@example.org", "b@example.org")
    assert set(outcome.refused) == {"gone@example.org"}
    refusal = outcome.refused["gone@example.org"]
    assert refusal.code == 550 and not refusal.temporary
    assert "No such user" in refusal.text
    [got] = smtp_server.received
    assert got.rcpt_tos == ["a@example.org", "b@example.org"]


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("550 5.1.1 No such user", DeliveryState.FAILED),
        ("450 4.2.1 Mailbox busy", DeliveryState.TEMPORARY_FAILURE),
    ],
)
async def test_the_only_recipient_refused(
    sender: SmtpSender, smtp_server: SmtpServer, status: str, state: DeliveryState
) -> None:
    smtp_server.handler.refuse["gone@example.org"] = status
    result = await sender.send(_mail("gone@example.org"))
    assert result.state is state
    assert result.error_code == status[:3]
    assert smtp_server.received == []
    # The refused transaction was reset: the connection carries the next mail.
    assert (await sender.send(_mail())).state is DeliveryState.SENT
    assert smtp_server.handler.ehlos == 1


async def test_server_restart_between_sends_reconnects(
    sender: SmtpSender, smtp_server: SmtpServer
) -> None:
    assert (await sender.send(_mail())).state is DeliveryState.SENT
    smtp_server.restart()
    # The kept connection is dead; the sender notices and sends on a new one at once.
    assert (await sender.send(_mail())).state is DeliveryState.SENT
    assert len(smtp_server.received) == 2
    assert sender.pool.connections_opened == 2


async def test_stale_connection_is_checked_with_noop(smtp_server: SmtpServer) -> None:
    sender = SmtpSender(_config(smtp_server, pool_size=1, noop_after_idle_seconds=0))
    try:
        assert (await sender.send(_mail())).state is DeliveryState.SENT
        smtp_server.restart()
        # The NOOP finds the old connection dead before any mail is written to it.
        assert (await sender.send(_mail())).state is DeliveryState.SENT
        assert (await sender.send(_mail())).state is DeliveryState.SENT
        assert sender.pool.connections_opened == 2
        assert len(smtp_server.received) == 3
    finally:
        await sender.close()


async def test_server_down_is_temporary_until_it_is_back(smtp_server: SmtpServer) -> None:
    sender = SmtpSender(_config(smtp_server, timeout=5.0))
    try:
        smtp_server.stop()
        result = await sender.send(_mail())
        assert result.state is DeliveryState.TEMPORARY_FAILURE
        assert result.error_code == ERROR_NETWORK
        smtp_server.start()
        assert (await sender.send(_mail())).state is DeliveryState.SENT
        assert len(smtp_server.received) == 1
    finally:
        await sender.close()


async def test_close_quits_and_refuses_further_sends(smtp_server: SmtpServer) -> None:
    sender = SmtpSender(_config(smtp_server))
    assert (await sender.send(_mail())).state is DeliveryState.SENT
    await sender.close()
    with pytest.raises(RuntimeError):
        await sender.send_mime(EmailMessage(), ["a@example.org"])


def test_config_forbids_unknown_keys() -> None:
    with pytest.raises(ValueError):
        SmtpConfig(hostname="x")  # type: ignore[call-arg]
