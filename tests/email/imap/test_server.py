"""The test Dovecot works with imapclient and our parser: the base for IMAP ingest."""

from __future__ import annotations

from email.message import EmailMessage

from imapclient import IMAPClient

from channels.email import parse_message
from tests.support.dovecot import ImapServer


def test_append_fetch_and_parse(dovecot: ImapServer) -> None:
    mail = EmailMessage()
    mail["From"] = "Anna Kundin <anna@example.org>"
    mail["To"] = "service@example.com"
    mail["Subject"] = "Frage zur Rechnung"
    mail["Message-ID"] = "<first@example.org>"
    mail["Date"] = "Thu, 26 Nov 2026 10:00:00 +0100"
    mail.set_content("Guten Tag,\nwo bleibt meine Rechnung?\n")
    with IMAPClient(dovecot.host, dovecot.port, ssl=False, timeout=10) as imap:
        imap.login("service@example.com", dovecot.password)
        imap.select_folder("INBOX")
        imap.append("INBOX", bytes(mail))
        uids = imap.search(["ALL"])
        assert len(uids) == 1
        # BODY.PEEK[]: reading must not mark the message seen before it is stored.
        fetched = imap.fetch(uids, ["BODY.PEEK[]", "FLAGS"])[uids[0]]
        assert b"\\Seen" not in fetched[b"FLAGS"]
        raw = fetched[b"BODY[]"]
    contact = parse_message(raw, max_bytes=1_000_000, attachment_store=None)
    assert (contact.provider_id, contact.sender_name, contact.subject) == (
        "<first@example.org>",
        "Anna Kundin",
        "Frage zur Rechnung",
    )
    assert contact.text == "Guten Tag,\nwo bleibt meine Rechnung?"
