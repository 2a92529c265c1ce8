"""Generate the email parse corpus (tests/email/corpus/*.eml) with the stdlib.

Run `python tests/email/corpus/make_corpus.py` to regenerate; the output is
deterministic (fixed dates, ids and content) so the committed files only
change when this script does. Broken messages are written as raw bytes,
because EmailMessage refuses to build what real mail servers deliver anyway.
Files named unparseable_* are meant to raise UnparseableEmail.
"""

from __future__ import annotations

import email.policy
import email.utils
from email.message import EmailMessage
from email.mime.application import MIMEApplication
from email.mime.base import MIMEBase
from email.mime.image import MIMEImage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

HERE = Path(__file__).parent
DATE = "Mon, 02 Mar 2026 09:{minute:02d}:00 +0100"
SUPPORT = "support@crmhub.example"
# A 1x1 transparent PNG: small, real image bytes for inline and attached images.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360000002000105f5a3b0a50000000049454e44ae426082"
)
OVERSIZE = 60_000  # over the 50_000-byte limit the tests pass as max_bytes
CUSTOMERS = [
    ("Anna Schmidt", "anna.schmidt@example.de"),
    ("Bob Miller", "bob@example.com"),
    ("Jürgen Groß", "juergen@example.at"),
    ("Chloé Dupont", "chloe@example.fr"),
    ("Dana Lee", "dana.lee@example.org"),
]


def write(name: str, data: bytes | EmailMessage | MIMEBase, crlf: bool = False) -> None:
    if not isinstance(data, bytes):
        # Fixed boundaries: the generator would pick random ones, changing every file per run.
        for i, part in enumerate(data.walk()):
            if part.is_multipart() and part.get_content_maintype() == "multipart":
                part.set_boundary(f"=={name}-{i}==")
        policy = email.policy.SMTP if crlf else email.policy.default
        data = data.as_bytes(policy=policy)
    (HERE / f"{name}.eml").write_bytes(data)


def base(n: int, subject: str, **extra: str) -> EmailMessage:
    display, addr = CUSTOMERS[n % len(CUSTOMERS)]
    msg = EmailMessage()
    msg["From"] = f"{display} <{addr}>"
    msg["To"] = f"Support <{SUPPORT}>"
    msg["Subject"] = subject
    msg["Date"] = DATE.format(minute=n % 60)
    slug = "".join(c for c in subject.split()[0].lower() if c.isalnum())
    msg["Message-ID"] = f"<{slug}-{n}@mail.example>"
    for key, value in extra.items():
        msg[key.replace("_", "-")] = value
    return msg


def mime_headers(msg: MIMEBase, n: int, subject: str) -> MIMEBase:
    msg["From"] = email.utils.formataddr(CUSTOMERS[n % len(CUSTOMERS)])
    msg["To"] = SUPPORT
    msg["Subject"] = subject
    msg["Date"] = DATE.format(minute=n % 60)
    msg["Message-ID"] = f"<mime-{subject.split()[0].lower()}-{n}@mail.example>"
    return msg


def plain() -> None:
    for n in range(10):
        msg = base(n, f"Question {n} about my order")
        msg.set_content(f"Hello,\n\nwhere is order {1000 + n}?\n\nThanks\n")
        write(f"plain_{n:02d}", msg, crlf=n % 2 == 0)


def alternative() -> None:
    for n in range(10):
        msg = base(n, f"Alternative {n}")
        msg.set_content(f"Plain body {n}\n")
        msg.add_alternative(
            f"<html><body><p>HTML body <b>{n}</b></p></body></html>", subtype="html"
        )
        write(f"alternative_{n:02d}", msg, crlf=n % 3 == 0)


def html_only() -> None:
    bodies = [
        "<p>Hello &amp; welcome</p><p>Second paragraph</p>",
        "<div>Line one<br>Line two<br/>Line three</div>",
        "<html><head><style>p {color: red}</style><script>alert(1)</script></head>"
        "<body><p>Only this text</p></body></html>",
        "<ul><li>First</li><li>Second</li></ul>",
        "<p>Caf&eacute; &lt;tag&gt; &#8364;5</p>",
        "<div>My answer</div><blockquote>Your old text<br>more old text</blockquote>",
        "<table><tr><td>Order</td><td>4711</td></tr></table>",
        "<p>Umlaute: Grüße aus München</p>",
    ]
    for n, body in enumerate(bodies):
        msg = base(n, f"Html {n}")
        msg.set_content(body, subtype="html")
        write(f"html_only_{n:02d}", msg)


def latin1() -> None:
    texts = [
        "Grüße aus Köln",
        "Straße 5, Büro",
        "Café crème",
        "Señor Núñez",
        "Øre og Ål",
        "ÄÖÜ äöü ß",
    ]
    for n, text in enumerate(texts):
        msg = MIMEText(f"{text}\n", "plain", "iso-8859-1")
        write(f"latin1_{n:02d}", mime_headers(msg, n, f"Latin1 {n}"))


def wrong_charset() -> None:
    texts = ["Grüße aus Köln", "Straße und Büro", "Crème brûlée", "Zoë\u2019s \u201cquote\u201d"]
    for n, text in enumerate(texts):
        head = (
            f"From: {CUSTOMERS[n][1]}\nTo: {SUPPORT}\nSubject: Wrong charset {n}\n"
            f"Date: {DATE.format(minute=n)}\nMessage-ID: <wrong-utf8-{n}@mail.example>\n"
            "MIME-Version: 1.0\nContent-Transfer-Encoding: 8bit\n"
        )
        utf8_as_latin = head + 'Content-Type: text/plain; charset="iso-8859-1"\n\n'
        write(f"wrong_charset_{n:02d}", utf8_as_latin.encode() + f"{text}\n".encode())
        latin_as_utf8 = head.replace("wrong-utf8", "wrong-latin") + (
            'Content-Type: text/plain; charset="utf-8"\n\n'
        )
        body = f"{text}\n".encode("cp1252")
        write(f"wrong_charset_{n + 4:02d}", latin_as_utf8.encode() + body)


def encoded_words() -> None:
    cases = [
        ("=?utf-8?q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=", "=?utf-8?q?J=C3=BCrgen_Gro=C3=9F?="),
        ("=?iso-8859-1?b?R3L832UgYXVzIEv2bG4=?=", "=?iso-8859-1?b?SvxyZ2Vu?="),
        ("=?utf-8?b?8J+YgCBTbWlsZQ==?=", "=?utf-8?q?Chlo=C3=A9?="),
        ("Re: =?utf-8?q?Bestellung_=C3=BCber?= 4711", '"Groß, Jürgen"'),
        ("=?iso-8859-1?q?Caf=E9?= =?iso-8859-1?q?_cr=E8me?=", "=?iso-8859-1?q?Se=F1or?="),
        ("=?windows-1252?q?=80_price?=", "=?utf-8?q?Dana?="),
        ("=?utf-8?q?broken_no_end", "=?utf-8?q?Bad=ZZName?="),
        ("=?unknown-charset?q?abc?=", "=?unknown-charset?q?Who?="),
    ]
    for n, (subject, name) in enumerate(cases):
        raw = (
            f"From: {name} <enc{n}@example.de>\nTo: {SUPPORT}\nSubject: {subject}\n"
            f"Date: {DATE.format(minute=n)}\nMessage-ID: <enc-{n}@mail.example>\n"
            "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\nBody\n"
        )
        write(f"encoded_words_{n:02d}", raw.encode("utf-8"))
    for n, charset in ((8, "utf-8"), (9, "latin-1")):  # unencoded 8-bit headers, as sent
        raw = (
            f"From: Jürgen Groß <raw{n}@example.de>\nTo: {SUPPORT}\nSubject: Grüße roh\n"
            f"Date: {DATE.format(minute=n)}\nMessage-ID: <enc-{n}@mail.example>\n\nBody\n"
        )
        write(f"encoded_words_{n:02d}", raw.encode(charset))


def missing_msgid() -> None:
    for n in range(6):
        msg = base(n, f"No id {n}")
        del msg["Message-ID"]
        msg.set_content(f"A message without id number {n}\n")
        write(f"missing_msgid_{n:02d}", msg)


def attachments() -> None:
    for n in range(5):
        msg = base(n, f"Attachment {n}")
        msg.set_content("See the attached file.\n")
        msg.add_attachment(
            f"invoice {n}\n".encode() * 20, "application", "pdf", filename=f"inv{n}.pdf"
        )
        if n % 2:
            msg.add_attachment("a,b\n1,2\n", subtype="csv", filename="data.csv")
        if n == 4:
            msg.add_attachment(b"%PDF-1.4", "application", "pdf", filename="Rechnung März.pdf")
        write(f"attachment_{n:02d}", msg)
    msg = base(5, "Attachment too large")
    msg.set_content("A big scan.\n")
    msg.add_attachment(
        bytes(range(256)) * (OVERSIZE // 256), "application", "octet-stream", filename="scan.bin"
    )
    msg.add_attachment(b"small", "application", "octet-stream", filename="small.bin")
    write("attachment_oversize_00", msg)


def malformed() -> None:
    good = f"To: {SUPPORT}\nSubject: Malformed\nMIME-Version: 1.0\n"
    cases = [
        f"From: a@example.com\n{good}Date: not a date at all\nMessage-ID: <m0@x>\n\nbad date\n",
        f"From: a@example.com\n{good}Date: Mon, 32 Foo 2026 99:99:99 +9999\n"
        "Message-ID: <m1@x>\n\nx\n",
        f'From: "Unbalanced <b@example.com>\n{good}Date: {DATE.format(minute=2)}\n'
        "Message-ID: <m2@x>\n\nbroken from\n",
        f'From: c@example.com\nTo: a@, <b@example.com>, "x" <>, ;;\nSubject: Bad list\n'
        f"Date: {DATE.format(minute=3)}\nCc: ,,,@@, d@example.com\nMessage-ID: <m3@x>\n\nbody\n",
        f"From: d@example.com\n{good}This header has no colon\nDate: {DATE.format(minute=4)}\n"
        "Message-ID: <m4@x>\n\nbody after bad header\n",
        f"From: e@example.com\n{good}Date: {DATE.format(minute=5)}\nMessage-ID: <m5@x>\n"
        "Content-Type: text/plain; charset=x-unknown-9\n\nunknown charset \xe4\n",
        f"From: f@example.com\n{good}Date: {DATE.format(minute=6)}\nMessage-ID: <m6@x>\n"
        "Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\n!!!not base64###\n",
        f"From: g@example.com\n{good}Date: {DATE.format(minute=7)}\nMessage-ID: <m7@x>\n"
        "Content-Type: multipart/mixed\n\nno boundary parameter\n",
        f"From: h@example.com\n{good}Date: {DATE.format(minute=8)}\nMessage-ID: <m8@x>\n"
        'Content-Type: multipart/mixed; boundary="XX"\n\n--XX\nContent-Type: text/plain\n\n'
        "never closed\n",
        f"From: i@example.com\n{good}Date: {DATE.format(minute=9)}\nMessage-ID: no-brackets@x\n"
        "In-Reply-To: bare@id.example garbage\nReferences: <r1@x> <r1@x>\n\nbare ids\n",
        f"From: Mr Nobody\nSender: real@example.com\n{good}Date: {DATE.format(minute=10)}\n"
        "Message-ID: <m10@x>\n\nfrom without address\n",
        f"From: k@example.com\n{good}Date: Mon, 02 Mar 2026 09:11:00\nMessage-ID: <m11@x>\n\n"
        "date without zone\n",
    ]
    for n, raw in enumerate(cases):
        write(f"malformed_{n:02d}", raw.encode("latin-1"))


DSN_TEXT = "This is the mail system. Your message could not be delivered.\n"


def dsn() -> None:
    """Postfix-style reports, as raw bytes (the stdlib cannot build message/delivery-status)."""
    cases = [
        ("5.1.1", "failed", "550 5.1.1 User unknown"),
        ("4.2.2", "delayed", "452 4.2.2 Mailbox full"),
    ]
    for n in range(8):
        status, action, diag = cases[n % 2]
        rcpt = f"customer{n}@example.net"
        original = (
            f"From: {SUPPORT}\nTo: {rcpt}\nSubject: Newsletter\n"
            f"Message-ID: <out-{n}@crmhub.example>\n"
        )
        if n < 4:
            returned = f"Content-Type: message/rfc822\n\n{original}\nOriginal newsletter text\n"
        else:
            returned = f"Content-Type: text/rfc822-headers\n\n{original}"
        raw = (
            "Return-Path: <>\nFrom: Mail Delivery System <MAILER-DAEMON@mx.crmhub.example>\n"
            f"To: {SUPPORT}\nSubject: Undelivered Mail Returned to Sender\n"
            f"Date: {DATE.format(minute=n)}\nMessage-ID: <dsn-{n}@mx.crmhub.example>\n"
            "Auto-Submitted: auto-replied\nMIME-Version: 1.0\n"
            'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
            f"--B\nContent-Type: text/plain\n\n{DSN_TEXT}\n"
            "--B\nContent-Type: message/delivery-status\n\n"
            "Reporting-MTA: dns; mx.crmhub.example\n\n"
            f"Final-Recipient: rfc822; {rcpt}\nAction: {action}\nStatus: {status}\n"
            f"Diagnostic-Code: smtp; {diag}\n\n"
            f"--B\n{returned}\n--B--\n"
        )
        write(f"dsn_{n:02d}", raw.encode())


def auto_reply() -> None:
    variants: list[dict[str, str]] = [
        {"Auto-Submitted": "auto-replied"},
        {"Auto-Submitted": "auto-generated"},
        {"Auto-Submitted": "no"},
        {"Precedence": "bulk"},
        {"Precedence": "junk"},
        {"Precedence": "list", "List-Id": "Team <team.example.org>"},
        {"X-Autoreply": "yes"},
        {"X-Auto-Response-Suppress": "All"},
        {"Return-Path": "<>"},
        {"Auto-Submitted": "auto-replied", "X-Autoreply": "yes", "Return-Path": "<>"},
    ]
    for n, headers in enumerate(variants):
        msg = base(n, f"Out of office {n}")
        for key, value in headers.items():
            msg[key] = value
        msg["In-Reply-To"] = f"<out-{n}@crmhub.example>"
        msg.set_content("I am out of the office until Monday.\n")
        write(f"auto_reply_{n:02d}", msg)


REPLIES = [
    "Thanks, that works!\n\nOn Mon, 2 Mar 2026 at 08:00, Support <support@crmhub.example> wrote:\n"
    "> Please restart the device.\n> Best regards\n",
    "Danke, das hat geholfen.\n\nAm 02.03.2026 um 08:00 schrieb Support <support@crmhub.example>:\n"
    "> Bitte starten Sie das Gerät neu.\n",
    "Please call me back.\n\n-----Original Message-----\nFrom: Support\n"
    "Sent: Monday, March 2, 2026\nTo: Bob\nSubject: Your ticket\n\nWe need more details.\n",
    "Bitte rufen Sie mich an.\n\n-----Ursprüngliche Nachricht-----\nVon: Support\n"
    "Gesendet: Montag, 2. März 2026\nAn: Anna\nBetreff: Ihr Ticket\n\nWir brauchen Details.\n",
    "Sounds good.\n\n________________________________\nFrom: Support <support@crmhub.example>\n"
    "Sent: Monday, March 2, 2026 8:00 AM\nTo: Dana\nSubject: Offer\n\nHere is the offer.\n",
    "> Which colour do you want?\nBlue, please.\n> And which size?\nXL.\n",
    "Yes.\n\nOn Mon, 2 Mar 2026 at 08:00, a very long name of the support team\n"
    "<support@crmhub.example> wrote:\n> Shall we ship?\n",
    "Just a new message, no quote at all.\n",
    "Ja.\n\nVon: Support <support@crmhub.example>\nGesendet: Montag, 2. März 2026 08:00\n"
    "An: Jürgen\nBetreff: Frage\n\nSoll es rot sein?\n",
    "See below.\n\n> quoted line one\n> quoted line two\n\n-- \nBob\n",
]


def replies() -> None:
    for n, body in enumerate(REPLIES):
        msg = base(n, f"Re: Ticket {n}")
        if n % 2 == 0:
            msg["In-Reply-To"] = f"<out-{n}@crmhub.example>"
            msg["References"] = f"<root-{n}@crmhub.example> <out-{n}@crmhub.example>"
        msg.set_content(body)
        write(f"reply_{n:02d}", msg, crlf=n % 4 == 1)


def nested() -> None:
    for n in range(4):
        outer = MIMEMultipart("mixed")
        related = MIMEMultipart("related")
        alt = MIMEMultipart("alternative")
        alt.attach(MIMEText(f"Nested plain {n}\n"))
        alt.attach(MIMEText(f'<p>Nested html {n}</p><img src="cid:logo{n}@x">', "html"))
        related.attach(alt)
        img = MIMEImage(PNG, "png")
        img["Content-ID"] = f"<logo{n}@x>"
        img["Content-Disposition"] = "inline"
        related.attach(img)
        outer.attach(related)
        pdf = MIMEApplication(b"%PDF-1.4 nested " + bytes([n]), "pdf")
        pdf["Content-Disposition"] = f'attachment; filename="doc{n}.pdf"'
        outer.attach(pdf)
        write(f"nested_{n:02d}", mime_headers(outer, n, f"Nested {n}"))


def inline_image() -> None:
    for n in range(3):
        msg = base(n, f"Screenshot {n}")
        msg.set_content("See the screenshot below.\n")
        msg.add_alternative(
            f'<p>See the screenshot below.</p><img src="cid:shot{n}@x">', subtype="html"
        )
        html = next(part for part in msg.iter_parts() if part.get_content_subtype() == "html")
        html.add_related(PNG + bytes([n]), "image", "png", cid=f"<shot{n}@x>")
        write(f"inline_image_{n:02d}", msg)


def delivered_to() -> None:
    """The mailbox the mail was delivered to wins over To (aliases, Bcc, lists)."""
    for n, extra in enumerate(
        ["Delivered-To: sales@crmhub.example\n", "X-Original-To: info@crmhub.example\n", ""]
    ):
        raw = (
            f"{extra}From: {CUSTOMERS[n][1]}\nTo: Someone <other@example.com>\n"
            f"Cc: team@crmhub.example\nSubject: Routing {n}\nDate: {DATE.format(minute=n)}\n"
            f"Message-ID: <route-{n}@mail.example>\n\nhello\n"
        )
        write(f"delivered_to_{n:02d}", raw.encode())


def unparseable() -> None:
    write("unparseable_00", b"")
    write("unparseable_01", b"\r\n\r\n  \n")
    write("unparseable_02", b"To: support@crmhub.example\nSubject: no sender\n\nbody\n")


def main() -> None:
    for old in HERE.glob("*.eml"):
        old.unlink()
    for make in (
        plain,
        alternative,
        html_only,
        latin1,
        wrong_charset,
        encoded_words,
        missing_msgid,
        attachments,
        malformed,
        dsn,
        auto_reply,
        replies,
        nested,
        inline_image,
        delivered_to,
        unparseable,
    ):
        make()


if __name__ == "__main__":
    main()
