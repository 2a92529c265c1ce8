"""channels/email/compose.py writes what `SmtpSender.build_message` flattened by
aiosmtplib would, as a reader parses it: the same headers, parts and bodies."""

from __future__ import annotations

import re
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pytest
from aiosmtplib.email import flatten_message

from channels.base import Channel, OutboundMessage
from channels.email.compose import compose
from channels.email.smtp import SmtpSender
from channels.email.smtp_config import SmtpConfig

SENDER = SmtpSender(
    SmtpConfig(
        host="127.0.0.1", port=25, tls="none", from_address="crm@example.com",
        domain="crm.example.com",
    )
)  # fmt: skip
LONG_TOKEN = "eyJjIjo0MiwiaSI6MTcsIm0iOjN9." + "x" * 90
MARKETING = {
    "marketing": True,
    "unsubscribe_url": f"https://crm.example.com/u/{LONG_TOKEN}",
    "unsubscribe_mailto": f"mailto:unsubscribe+{LONG_TOKEN}@crm.example.com",
}
LOREM = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 8

CASES: dict[str, dict[str, Any]] = {
    "plain reply": {
        "text": "Hello,\nyour order has shipped.\n",
        "subject": "Re: Your order",
        "headers": {
            "In-Reply-To": "<abc@customer.example>",
            "References": "<root@crm.example.com> <abc@customer.example>",
            "Reply-To": "reply+t0k3n@crm.example.com",
        },
    },
    "newsletter": {
        "sender": "News <news@example.com>",
        "subject": "Neuigkeiten für Kunde 7 — Dezember",
        "text": f"Hallo Kunde 7,\n\n{LOREM}\n\nAbmelden: {MARKETING['unsubscribe_url']}\n",
        "metadata": {**MARKETING, "html": f"<h1>Hallo</h1><p>{LOREM}</p><a href='x'>ü</a>"},
    },
    "awkward text": {
        "subject": "x" * 100 + " " + "ÄÖÜ " * 40 + "?=_= tail",
        "text": "CRLF\r\nCR\rtrailing space \nfoo=bar\n.\nFrom here\n\tTab\t\n" + "ß" * 200,
        "headers": {"X-Campaign": "  spaced  out  " + "y" * 80, "References": ""},
    },
    "no final newline, empty subject": {"text": "one line", "subject": ""},
}


def _message(case: dict[str, Any]) -> OutboundMessage:
    case = {**case, "headers": {"Message-ID": "<fixed@crm.example.com>", **case.get("headers", {})}}
    return OutboundMessage(channel=Channel.EMAIL, recipient="kunde@example.org", **case)


def _parse(raw: bytes) -> EmailMessage:
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _view(msg: EmailMessage) -> list[Any]:
    """Headers in any order (Date aside: it is the time of building; Subject aside: the
    email package's folding drops spaces between some encoded words of a long one)
    and each leaf's type and content."""
    headers = sorted((k, str(v).strip()) for k, v in msg.items() if k not in ("Date", "Subject"))
    # A multipart's boundary is random on both sides.
    headers = [(k, re.sub(r'boundary="[^"]+"', "", v)) for k, v in headers]
    parts = [(p.get_content_type(), p.get_content()) for p in msg.walk() if not p.is_multipart()]
    return [headers, msg.get_content_type(), parts, msg.defects]


@pytest.mark.parametrize("name", sorted(CASES))
def test_parses_as_the_email_package_builds_it(name: str) -> None:
    message = _message(CASES[name])
    raw, message_id = SENDER.wire_message(message)
    assert isinstance(raw, bytes)
    assert message_id == "<fixed@crm.example.com>"
    assert raw.isascii()
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert b"\n" not in raw.replace(b"\r\n", b"")
    reference = _parse(flatten_message(SENDER.build_message(message)))
    got = _parse(raw)
    assert _view(got) == _view(reference)
    assert got["Date"] is not None
    assert got["Subject"] == message.subject


def test_long_list_unsubscribe_is_folded_not_encoded() -> None:
    raw, _ = SENDER.wire_message(_message(CASES["newsletter"]))
    assert isinstance(raw, bytes)
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    field = head[head.index("List-Unsubscribe:") : head.index("List-Unsubscribe-Post:")]
    assert "=?" not in field
    url, mailto = MARKETING["unsubscribe_url"], MARKETING["unsubscribe_mailto"]
    assert field == f"List-Unsubscribe: <{url}>,\r\n <{mailto}>\r\n"


@pytest.mark.parametrize(
    "headers",
    [
        [("To", "Müller <m@example.org>")],  # non-ASCII address: encoded display name
        [("From", "Doe, John <j@example.org>")],  # needs quoting
        [("Message-ID", "not an id")],
        [("Subject", "a"), ("subject", "b")],  # twice
        [("Bcc", "hidden@example.org")],
        [("X-Trap", "=?utf-8?q?looks_encoded?=")],
        [("X-Long", "z" * 1200)],
        [("Bad Name", "v")],
    ],
)
def test_leaves_what_it_does_not_write_to_the_email_package(
    headers: list[tuple[str, str]],
) -> None:
    assert compose(headers, "text") is None


def test_a_line_break_in_a_header_is_refused() -> None:
    with pytest.raises(ValueError, match="linefeed"):
        compose([("Subject", "Hi\r\nBcc: victim@example.net")], "text")


def test_falls_back_for_a_non_ascii_recipient() -> None:
    message = OutboundMessage(channel=Channel.EMAIL, recipient="jürgen@example.org", text="x")
    msg, _ = SENDER.wire_message(message)
    assert isinstance(msg, EmailMessage)
