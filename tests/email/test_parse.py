"""Raw email → InboundContact over the generated corpus (tests/email/corpus/make_corpus.py)."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from channels.base import Channel, InboundContact, MetaKey
from channels.email import AttachmentStore, UnparseableEmail, parse_message
from channels.email.parse import digest_id
from channels.email.text import decode_text, html_to_text, split_quote
from routing.mail_rules import autoreply_reason, bounce_of

CORPUS = Path(__file__).parent / "corpus"
FILES = sorted(CORPUS.glob("*.eml"))
LIMIT = 50_000
RECEIVED = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
CET = timezone(timedelta(hours=1))


def parse(name: str, store: AttachmentStore | None = None) -> InboundContact:
    raw = (CORPUS / f"{name}.eml").read_bytes()
    return parse_message(raw, max_bytes=LIMIT, attachment_store=store, received_at=RECEIVED)


def test_corpus_is_large_small_and_covers_every_category() -> None:
    assert len(FILES) >= 100
    assert sum(f.stat().st_size for f in FILES) < 1_000_000
    categories = {f.stem.rsplit("_", 1)[0] for f in FILES}
    assert categories >= {
        "plain", "alternative", "html_only", "latin1", "wrong_charset", "encoded_words",
        "missing_msgid", "attachment", "attachment_oversize", "malformed", "dsn",
        "auto_reply", "reply", "nested", "inline_image", "delivered_to", "unparseable",
    }  # fmt: skip


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_every_corpus_message_parses(path: Path, tmp_path: Path) -> None:
    raw = path.read_bytes()
    store = AttachmentStore(tmp_path)
    if path.stem.startswith("unparseable_"):
        with pytest.raises(UnparseableEmail):
            parse_message(raw, max_bytes=LIMIT, attachment_store=store)
        return
    contact = parse_message(raw, max_bytes=LIMIT, attachment_store=store, received_at=RECEIVED)
    assert contact.channel is Channel.EMAIL
    assert contact.provider_id and contact.provider_id.startswith("<")
    assert contact.occurred_at.tzinfo is not None
    assert "@" in contact.sender
    assert isinstance(contact.metadata[MetaKey.PARSE_DEFECTS], list)


def test_multipart_alternative_prefers_plain_text() -> None:
    c = parse("alternative_02")
    assert (c.sender, c.sender_name, c.recipient) == (
        "juergen@example.at",
        "Jürgen Groß",
        "support@crmhub.example",
    )
    assert (c.subject, c.text, c.provider_id) == (
        "Alternative 2",
        "Plain body 2",
        "<alternative-2@mail.example>",
    )
    assert c.occurred_at == datetime(2026, 3, 2, 9, 2, tzinfo=CET)
    assert c.metadata[MetaKey.CONTENT_TYPE] == "multipart/alternative"
    assert c.attachments == ()
    assert c.metadata[MetaKey.PARSE_DEFECTS] == []


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("html_only_00", "Hello & welcome\nSecond paragraph"),
        ("html_only_01", "Line one\nLine two\nLine three"),
        ("html_only_02", "Only this text"),
        ("html_only_03", "- First\n- Second"),
        ("html_only_04", "Café <tag> €5"),
        ("html_only_05", "My answer"),
        ("html_only_06", "Order 4711"),
    ],
)
def test_html_only_becomes_readable_text(name: str, text: str) -> None:
    assert parse(name).text == text


def test_html_blockquote_is_the_quoted_part() -> None:
    c = parse("html_only_05")
    assert c.metadata[MetaKey.FULL_TEXT] == "My answer\n> Your old text\n> more old text"
    assert c.metadata[MetaKey.QUOTED_TEXT] == "> Your old text\n> more old text"


def test_html_to_text_drops_script_and_style() -> None:
    html = "<style>p{}</style><script>x()</script><p>a&nbsp;b</p><div>c<br>d</div>"
    assert html_to_text(html) == "a b\nc\nd"


@pytest.mark.parametrize(
    ("name", "text"),
    [("latin1_00", "Grüße aus Köln"), ("latin1_03", "Señor Núñez"), ("latin1_05", "ÄÖÜ äöü ß")],
)
def test_latin1(name: str, text: str) -> None:
    assert parse(name).text == text


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("wrong_charset_00", "Grüße aus Köln"),  # utf-8 bytes declared iso-8859-1
        ("wrong_charset_03", "Zoë\u2019s \u201cquote\u201d"),
        ("wrong_charset_04", "Grüße aus Köln"),  # latin-1 bytes declared utf-8
        ("wrong_charset_07", "Zoë\u2019s \u201cquote\u201d"),  # cp1252 quotes declared utf-8
        ("malformed_05", "unknown charset ä"),  # unknown charset name
    ],
)
def test_wrongly_declared_charsets_are_recovered(name: str, text: str) -> None:
    c = parse(name)
    assert c.text == text
    assert "CharsetMismatch" in c.metadata[MetaKey.PARSE_DEFECTS]


def test_decode_text_never_raises() -> None:
    assert decode_text(b"\xff\xfe\x00", "utf-8")[0] == "ÿþ\x00"
    assert decode_text(b"abc", None) == ("abc", False)
    assert decode_text("ä".encode(), "utf-8") == ("ä", False)


@pytest.mark.parametrize(
    ("name", "subject", "sender_name"),
    [
        ("encoded_words_00", "Grüße aus Köln", "Jürgen Groß"),
        ("encoded_words_01", "Grüße aus Köln", "Jürgen"),
        ("encoded_words_02", "😀 Smile", "Chloé"),
        ("encoded_words_03", "Re: Bestellung über 4711", "Groß, Jürgen"),
        ("encoded_words_04", "Café crème", "Señor"),
        ("encoded_words_05", "€ price", "Dana"),
        ("encoded_words_06", "=?utf-8?q?broken_no_end", "Bad=ZZName"),
        ("encoded_words_08", "Grüße roh", "Jürgen Groß"),  # raw 8-bit utf-8 headers
        ("encoded_words_09", "Grüße roh", "Jürgen Groß"),  # raw 8-bit latin-1 headers
    ],
)
def test_encoded_words(name: str, subject: str, sender_name: str) -> None:
    c = parse(name)
    assert (c.subject, c.sender_name) == (subject, sender_name)


def test_missing_message_id_gets_a_stable_digest() -> None:
    raw = (CORPUS / "missing_msgid_00.eml").read_bytes()
    first = parse_message(raw, max_bytes=LIMIT, attachment_store=None)
    second = parse_message(raw, max_bytes=LIMIT, attachment_store=None)
    assert first.provider_id == second.provider_id == digest_id(raw)
    assert first.provider_id is not None
    assert first.provider_id.startswith("<sha256:")
    assert first.provider_id.endswith("@crmhub.invalid>")
    others = {parse(f"missing_msgid_{n:02d}").provider_id for n in range(6)}
    assert len(others) == 6


def test_digest_ignores_headers_added_on_delivery_and_line_endings() -> None:
    raw = (CORPUS / "missing_msgid_01.eml").read_bytes()
    delivered = b"Received: from mx by imap; Mon, 2 Mar 2026\nX-Spam: no\n" + raw
    assert digest_id(delivered) == digest_id(raw) == digest_id(raw.replace(b"\n", b"\r\n"))
    assert digest_id(raw.replace(b"without id", b"with no id")) != digest_id(raw)


def test_attachments_are_stored_by_content(tmp_path: Path) -> None:
    store = AttachmentStore(tmp_path)
    c = parse("attachment_04", store)
    assert [(a.filename, a.content_type) for a in c.attachments] == [
        ("inv4.pdf", "application/pdf"),
        ("Rechnung März.pdf", "application/pdf"),
    ]
    pdf = b"invoice 4\n" * 20
    assert c.attachments[0].size == len(pdf)
    assert c.attachments[0].sha256 == hashlib.sha256(pdf).hexdigest()
    assert store.read(hashlib.sha256(pdf).hexdigest()) == pdf
    assert MetaKey.SKIPPED_ATTACHMENTS not in c.metadata


def test_oversized_attachment_is_referenced_but_not_stored(tmp_path: Path) -> None:
    store = AttachmentStore(tmp_path)
    c = parse("attachment_oversize_00", store)
    big, small = c.attachments
    assert (big.filename, big.size) == ("scan.bin", 59_904)
    assert big.sha256 is not None and not store.exists(big.sha256)
    assert small.sha256 is not None and store.read(small.sha256) == b"small"
    assert c.metadata[MetaKey.SKIPPED_ATTACHMENTS] == [
        {
            "filename": "scan.bin",
            "content_type": "application/octet-stream",
            "size": 59_904,
            "sha256": big.sha256,
            "reason": "too_large",
        }
    ]


def test_nested_multipart_and_inline_images(tmp_path: Path) -> None:
    c = parse("nested_01", AttachmentStore(tmp_path))
    assert c.text == "Nested plain 1"
    assert [a.content_type for a in c.attachments] == ["image/png", "application/pdf"]
    assert c.attachments[1].filename == "doc1.pdf"
    shot = parse("inline_image_00")
    assert [a.content_type for a in shot.attachments] == ["image/png"]


def test_attachment_store_dedups_and_writes_atomically(tmp_path: Path) -> None:
    store = AttachmentStore(tmp_path)
    digest = store.put(b"hello")
    path = store.path_for(digest)
    assert path == tmp_path / digest[:2] / digest[2:4] / digest
    mtime = path.stat().st_mtime_ns
    os.utime(path, ns=(0, 0))
    assert store.put(b"hello") == digest
    assert path.stat().st_mtime_ns == 0 != mtime  # not rewritten
    assert [p.name for p in path.parent.iterdir()] == [digest]  # no temp file left behind
    with pytest.raises(ValueError):
        store.path_for("../../etc/passwd")


def test_attachment_store_leaves_nothing_when_a_write_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = AttachmentStore(tmp_path)

    def fail(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        store.put(b"data")
    digest = hashlib.sha256(b"data").hexdigest()
    assert not store.exists(digest)
    assert list(store.path_for(digest).parent.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "status", "action"),
    [("dsn_00", "5.1.1", "failed"), ("dsn_05", "4.2.2", "delayed")],
)
def test_dsn_bounce(name: str, status: str, action: str) -> None:
    c = parse(name)
    n = int(name[-1])
    assert c.sender == "MAILER-DAEMON@mx.crmhub.example"
    assert c.metadata[MetaKey.IS_DSN] is True
    assert c.metadata[MetaKey.RETURN_PATH] == ""
    assert c.metadata[MetaKey.CONTENT_TYPE] == "multipart/report"
    diag = "550 5.1.1 User unknown" if status[0] == "5" else "452 4.2.2 Mailbox full"
    assert c.metadata[MetaKey.DSN_TEXT] == (
        "Reporting-MTA: dns; mx.crmhub.example\n\n"
        f"Final-Recipient: rfc822; customer{n}@example.net\nAction: {action}\n"
        f"Status: {status}\nDiagnostic-Code: smtp; {diag}"
    )
    assert c.metadata[MetaKey.DSN_ORIGINAL_HEADERS] == {
        "from": "support@crmhub.example",
        "to": f"customer{n}@example.net",
        "subject": "Newsletter",
        "message-id": f"<out-{n}@crmhub.example>",
    }


@pytest.mark.parametrize(
    ("name", "status", "permanent"),
    [("dsn_00", "5.1.1", True), ("dsn_05", "4.2.2", False), ("dsn_07", "4.2.2", False)],
)
def test_dsn_metadata_is_what_the_routing_bounce_step_reads(
    name: str, status: str, permanent: bool
) -> None:
    """The contract between this parser and routing/mail_steps.py, end to end."""
    bounce = bounce_of(parse(name))
    n = int(name[-1])
    assert bounce is not None
    assert bounce.original_message_id == f"<out-{n}@crmhub.example>"
    assert [(r.address, r.status) for r in bounce.recipients] == [
        (f"customer{n}@example.net", status)
    ]
    assert bounce.permanent is permanent


@pytest.mark.parametrize("n", range(10))
def test_auto_reply_corpus_is_classified_by_routing(n: int) -> None:
    # auto_reply_02 carries "Auto-Submitted: no": a person wrote it (RFC 3834).
    reason = autoreply_reason(parse(f"auto_reply_{n:02d}"))
    assert (reason is None) is (n == 2)


def test_plain_mail_is_no_bounce() -> None:
    assert bounce_of(parse("plain_00")) is None


@pytest.mark.parametrize(
    ("name", "key", "value"),
    [
        ("auto_reply_00", MetaKey.AUTO_SUBMITTED, "auto-replied"),
        ("auto_reply_02", MetaKey.AUTO_SUBMITTED, "no"),
        ("auto_reply_03", MetaKey.PRECEDENCE, "bulk"),
        ("auto_reply_05", MetaKey.LIST_ID, "Team <team.example.org>"),
        ("auto_reply_06", MetaKey.X_AUTOREPLY, "yes"),
        ("auto_reply_07", MetaKey.X_AUTO_RESPONSE_SUPPRESS, "All"),
        ("auto_reply_08", MetaKey.RETURN_PATH, ""),
    ],
)
def test_auto_reply_headers_reach_metadata(name: str, key: str, value: str) -> None:
    c = parse(name)
    assert c.metadata[key] == value
    assert c.metadata[MetaKey.IS_DSN] is False
    assert MetaKey.DSN_TEXT not in c.metadata


def test_absent_classification_headers_are_none() -> None:
    meta = parse("plain_00").metadata
    for key in (
        MetaKey.AUTO_SUBMITTED,
        MetaKey.PRECEDENCE,
        MetaKey.X_AUTOREPLY,
        MetaKey.RETURN_PATH,
        MetaKey.LIST_ID,
    ):
        assert meta[key] is None


def test_reply_with_in_reply_to_and_references() -> None:
    c = parse("reply_00")
    assert c.thread_refs == ("<out-0@crmhub.example>", "<root-0@crmhub.example>")
    assert c.text == "Thanks, that works!"
    assert c.metadata[MetaKey.FULL_TEXT].startswith("Thanks, that works!\n\nOn Mon, 2 Mar 2026")
    assert parse("reply_01").thread_refs == ()


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("reply_01", "Danke, das hat geholfen."),
        ("reply_02", "Please call me back."),
        ("reply_03", "Bitte rufen Sie mich an."),
        ("reply_04", "Sounds good."),
        ("reply_05", "Blue, please.\nXL."),
        ("reply_06", "Yes."),
        ("reply_07", "Just a new message, no quote at all."),
        ("reply_08", "Ja."),
        ("reply_09", "See below."),
    ],
)
def test_reply_new_part(name: str, text: str) -> None:
    assert parse(name).text == text


@pytest.mark.parametrize(
    ("text", "new", "quoted"),
    [
        (
            "Fine.\n\nOn Tue, 3 Mar 2026 at 10:00, Ann <a@x.de> wrote:\n> old\n> older",
            "Fine.",
            "On Tue, 3 Mar 2026 at 10:00, Ann <a@x.de> wrote:\n> old\n> older",
        ),
        (
            "Gut.\n\nAm 03.03.2026 um 10:00 schrieb Ann <a@x.de>:\n> alt",
            "Gut.",
            "Am 03.03.2026 um 10:00 schrieb Ann <a@x.de>:\n> alt",
        ),
        (
            "Ok\n-----Original Message-----\nFrom: A\nSent: today\n\nold",
            "Ok",
            "-----Original Message-----\nFrom: A\nSent: today\n\nold",
        ),
        (
            "Ok\n\n-----Ursprüngliche Nachricht-----\nVon: A\nGesendet: heute\n\nalt",
            "Ok",
            "-----Ursprüngliche Nachricht-----\nVon: A\nGesendet: heute\n\nalt",
        ),
        (
            "Ok\n\n__________\nFrom: A <a@x>\nSent: today\nTo: B\n\nold",
            "Ok",
            "__________\nFrom: A <a@x>\nSent: today\nTo: B\n\nold",
        ),
        ("Top\n> q1\n> q2", "Top", "> q1\n> q2"),
        ("> q1\nanswer 1\n> q2\nanswer 2", "answer 1\nanswer 2", "> q1\n> q2"),
        ("Top\n\n> q\n\n-- \nBob", "Top", "> q\n\n--\nBob"),
        ("no quote here\nFrom: me, happily", "no quote here\nFrom: me, happily", ""),
        ("> only a quote", "> only a quote", ""),
        ("", "", ""),
    ],
)
def test_split_quote(text: str, new: str, quoted: str) -> None:
    assert split_quote(text) == (new, quoted)


def test_recipient_prefers_delivered_to() -> None:
    assert parse("delivered_to_00").recipient == "sales@crmhub.example"
    assert parse("delivered_to_01").recipient == "info@crmhub.example"
    c = parse("delivered_to_02")
    assert (c.recipient, c.metadata[MetaKey.CC]) == ("other@example.com", ["team@crmhub.example"])


def test_bad_date_falls_back_to_received_time() -> None:
    c = parse("malformed_00")
    assert c.occurred_at == RECEIVED
    assert "InvalidDateDefect" in c.metadata[MetaKey.PARSE_DEFECTS]
    raw = (CORPUS / "malformed_00.eml").read_bytes()
    now = parse_message(raw, max_bytes=LIMIT, attachment_store=None).occurred_at
    assert now.tzinfo is not None
    assert parse("malformed_11").occurred_at == datetime(2026, 3, 2, 9, 11, tzinfo=UTC)


def test_malformed_headers_degrade_gracefully() -> None:
    assert parse("malformed_02").sender == "b@example.com"
    bad_list = parse("malformed_03")
    assert (bad_list.recipient, bad_list.metadata[MetaKey.CC]) == (
        "b@example.com",
        ["d@example.com"],
    )
    no_colon = parse("malformed_04")
    assert (no_colon.text, no_colon.provider_id) == ("body after bad header", "<m4@x>")
    assert "HeaderWithoutColon" in no_colon.metadata[MetaKey.PARSE_DEFECTS]
    bare = parse("malformed_09")
    assert bare.provider_id == "<no-brackets@x>"
    assert bare.thread_refs == ("<bare@id.example>", "<r1@x>")
    assert parse("malformed_10").sender == "real@example.com"  # From without address -> Sender


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty message"),
        (b" \r\n", "empty message"),
        (b"To: a@example.com\n\nhi\n", "no sender"),
    ],
)
def test_unparseable(raw: bytes, reason: str) -> None:
    with pytest.raises(UnparseableEmail, match=reason):
        parse_message(raw, max_bytes=LIMIT, attachment_store=None)
