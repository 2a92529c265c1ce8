"""routing/dsn.py alone: real-world-shaped delivery reports in, recipient statuses out.

The samples are shared with tests/test_routing_classify.py.
"""

from __future__ import annotations

import pytest

from routing.dsn import RecipientStatus, parse_dsn, parse_plain_bounce

POSTFIX_551 = """\
Reporting-MTA: dns; mail.example.com
X-Postfix-Queue-ID: 4Fq1xR2KzMz9sWm
X-Postfix-Sender: rfc822; news@crmhub.example
Arrival-Date: Thu, 26 Nov 2026 11:58:01 +0100 (CET)

Final-Recipient: rfc822; nobody@customer.example
Original-Recipient: rfc822;nobody@customer.example
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.customer.example
Diagnostic-Code: smtp; 550 5.1.1 <nobody@customer.example>: Recipient address
    rejected: User unknown in virtual mailbox table
"""

EXIM = """\
Reporting-MTA: dns; mx1.isp.example

Action: failed
Final-Recipient: rfc822;Old.Address@ISP.example
Status: 5.0.0
Remote-MTA: dns; in.isp.example
Diagnostic-Code: smtp; 550 mailbox unavailable
"""

EXCHANGE = """\
reporting-mta: dns;EXCH01.corp.example
received-from-mta: dns;EXCH02.corp.example
arrival-date: Thu, 26 Nov 2026 11:00:00 +0000

original-recipient: rfc822;J.Doe@corp.example
final-recipient: rfc822;J.Doe@corp.example
action: failed
status: 5.2.2
diagnostic-code: smtp;554 5.2.2 mailbox full;
 STOREDRV.Deliver.Exception:QuotaExceededException.MapiExceptionShutoffQuotaExceeded;
 Failed to process message due to a permanent exception with message
x-display-name: Jane Doe
"""

DELAYED = """\
Reporting-MTA: dns; mail.example.com
Arrival-Date: Thu, 26 Nov 2026 07:00:00 +0000

Final-Recipient: rfc822; full@customer.example
Action: delayed
Status: 4.2.2
Diagnostic-Code: smtp; 452 4.2.2 Mailbox full
Will-Retry-Until: Mon, 30 Nov 2026 07:00:00 +0000
"""

# Several recipients, and a generator that forgets the blank line before the last one.
MIXED = """\
Reporting-MTA: dns; mail.example.com

Final-Recipient: rfc822; gone@a.example
Action: failed
Status: 5.1.1

Final-Recipient: rfc822; busy@b.example
Action: delayed
Status: 4.4.1
Diagnostic-Code: X-Postfix; connect to mx.b.example[192.0.2.1]:25: Connection timed out
Final-Recipient: rfc822; ok@c.example
Action: delivered
Status: 2.0.0
"""

POSTFIX_PLAIN = """\
This is the mail system at host mail.example.com.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<nobody@customer.example>: host mx.customer.example[203.0.113.5] said: 550 5.1.1
    <nobody@customer.example>: Recipient address rejected: User unknown (in reply
    to RCPT TO command)
"""


def test_parse_postfix_user_unknown() -> None:
    [r] = parse_dsn(POSTFIX_551)
    assert (r.address, r.status, r.action) == ("nobody@customer.example", "5.1.1", "failed")
    assert r.diagnostic == (
        "550 5.1.1 <nobody@customer.example>: Recipient address rejected: "
        "User unknown in virtual mailbox table"
    )
    assert r.permanent and not r.temporary


def test_parse_exim_style_field_order_and_case() -> None:
    assert parse_dsn(EXIM) == [
        RecipientStatus("old.address@isp.example", "5.0.0", "failed", "550 mailbox unavailable")
    ]


def test_parse_exchange_folded_diagnostic() -> None:
    [r] = parse_dsn(EXCHANGE)
    assert (r.address, r.status, r.action) == ("j.doe@corp.example", "5.2.2", "failed")
    assert r.diagnostic.startswith("554 5.2.2 mailbox full; STOREDRV.Deliver.Exception")
    assert r.diagnostic.endswith("permanent exception with message")
    assert "\n" not in r.diagnostic


def test_parse_delayed_mailbox_full() -> None:
    [r] = parse_dsn(DELAYED)
    assert (r.address, r.status, r.action) == ("full@customer.example", "4.2.2", "delayed")
    assert r.temporary and not r.permanent


def test_parse_several_recipients_mixed() -> None:
    got = parse_dsn(MIXED)
    assert [(r.address, r.status, r.action) for r in got] == [
        ("gone@a.example", "5.1.1", "failed"),
        ("busy@b.example", "4.4.1", "delayed"),
        ("ok@c.example", "2.0.0", "delivered"),
    ]
    assert [r.permanent for r in got] == [True, False, False]
    assert got[1].diagnostic.startswith("connect to mx.b.example")


def test_parse_tolerates_crlf_missing_status_and_missing_action() -> None:
    text = (
        "Final-Recipient: rfc822; <A@X.example>\r\n"
        "Diagnostic-Code: smtp; 550-5.7.1 blocked\r\n"
        "\r\n"
        "Original-Recipient: rfc822; b@y.example\r\n"
        "Status: 4.3.0 (temporary)\r\n"
    )
    assert parse_dsn(text) == [
        RecipientStatus("a@x.example", "5.7.1", "failed", "550-5.7.1 blocked"),
        RecipientStatus("b@y.example", "4.3.0", "delayed", ""),
    ]


@pytest.mark.parametrize(
    "text", ["", "hello\n\nworld", "Reporting-MTA: dns; x\n", "Action: failed"]
)
def test_parse_without_recipients_is_empty(text: str) -> None:
    assert parse_dsn(text) == []


def test_parse_plain_postfix_bounce() -> None:
    [r] = parse_plain_bounce(POSTFIX_PLAIN)
    assert (r.address, r.status, r.action) == ("nobody@customer.example", "5.1.1", "failed")
    assert "said: 550 5.1.1" in r.diagnostic


def test_original_recipient_after_final_recipient_stays_one_record() -> None:
    text = "Final-Recipient: rfc822; a@x.example\nOriginal-Recipient: rfc822; A@x.example\n"
    text += "Action: failed\nStatus: 5.1.1\n"
    assert parse_dsn(text) == [RecipientStatus("a@x.example", "5.1.1", "failed", "")]
