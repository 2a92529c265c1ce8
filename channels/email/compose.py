"""Outgoing mail as wire bytes without the `email` package's object model.

`EmailMessage` plus its flattening cost ~1-3 ms per message (the header
registry parses every header it is given and folds it again on the way
out); a campaign sends hundreds of mails a second, and that was the largest
cost per mail in the dispatcher. The messages the outbox sends have a fixed
shape (our own headers, a few copied ones, a text part and maybe an HTML
alternative, quoted-printable, 7-bit), which is simple to write directly.

`compose` writes only what it is sure of and returns None for anything else
(a non-ASCII address, an address that needs quoting, a header name given
twice, Bcc, a line over 998 characters, text that looks like an encoded
word); the caller then builds the message with the `email` package as
before. What comes out parses to the same headers and bodies as
`SmtpSender.build_message` flattened by aiosmtplib
(tests/email/test_compose.py checks that). One difference on purpose: a long
ASCII header such as List-Unsubscribe is folded at its spaces and otherwise
left as it is, where the `email` package turns a header with a word longer
than a line into RFC 2047 encoded words, which List-Unsubscribe parsers do
not decode.
"""

from __future__ import annotations

import binascii
import random
import re
from collections.abc import Sequence

MAX_LINE = 78  # RFC 5322's "should"
HARD_LINE = 998  # its "must"

# Headers whose value the `email` package parses as addresses or ids: written
# raw only when they have the simple shapes below.
_ADDRESS_HEADERS = frozenset(
    ("from", "to", "cc", "reply-to", "sender", "resent-from", "resent-to", "resent-cc")
)
_ID_HEADERS = frozenset(("message-id", "resent-message-id"))
_DATE_HEADERS = frozenset(("date", "resent-date"))
_SKIPPED = frozenset(("bcc", "resent-bcc"))  # aiosmtplib drops them; not our job here
_NAME = re.compile(r"[!-9;-~]+")
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+"
_ADDR_SPEC = rf"{_ATEXT}@{_ATEXT}"
_ADDRESS = re.compile(rf"{_ADDR_SPEC}|(?:{_ATEXT}(?: {_ATEXT})* )?<{_ADDR_SPEC}>")
_MSG_ID = re.compile(r"<[^<>\s]+@[^<>\s]+>")
_DATE = re.compile(r"[A-Za-z]{3}, \d\d [A-Za-z]{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}")
# Characters a Q-encoded word may carry as they are (RFC 2047 5(3)), "_" for space.
_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_Q_CHARS = {b: chr(b) if b in _Q_SAFE else f"={b:02X}" for b in range(256)}
_Q_CHARS[0x20] = "_"


class NeedsEmailPackage(Exception):
    """Raised inside `compose` for input it does not write itself."""


def _check(value: str) -> None:
    if "\r" in value or "\n" in value:
        # As the email package says it: a line break would start a new header.
        raise ValueError("Header values may not contain linefeed or carriage return characters")


def _fold_ascii(name: str, value: str) -> str:
    """`Name: value`, folded before spaces so lines keep to MAX_LINE where they can
    (a longer word stays whole: unfolding must give back the value exactly)."""
    line = f"{name}: {value}"
    if len(line) <= MAX_LINE:
        return line + "\r\n"
    words = value.split(" ")
    lines: list[str] = []
    current = f"{name}: {words[0]}"
    for word in words[1:]:
        # Never a continuation line of spaces only (RFC 5322 3.2.2).
        if word and len(current) + 1 + len(word) > MAX_LINE:
            lines.append(current)
            current = " " + word
        else:
            current += " " + word
    lines.append(current)
    if any(len(x) > HARD_LINE for x in lines):
        raise NeedsEmailPackage(name)
    return "\r\n".join(lines) + "\r\n"


def _encoded_words(name: str, value: str) -> str:
    """`Name: =?utf-8?q?...?=`, in as many encoded words (one a line) as it takes."""
    lines: list[str] = []
    budget = MAX_LINE - len(name) - 2 - len("=?utf-8?q??=")
    word: list[str] = []
    size = 0
    for ch in value:
        encoded = "".join(_Q_CHARS[b] for b in ch.encode("utf-8"))
        if size + len(encoded) > budget and word:  # never split one character's bytes
            lines.append("=?utf-8?q?" + "".join(word) + "?=")
            word, size, budget = [], 0, MAX_LINE - 1 - len("=?utf-8?q??=")
        word.append(encoded)
        size += len(encoded)
    lines.append("=?utf-8?q?" + "".join(word) + "?=")
    # Whitespace between encoded words is not part of the text (RFC 2047 6.2).
    return f"{name}: " + "\r\n ".join(lines) + "\r\n"


def _header(name: str, value: str) -> str:
    _check(value)
    key = name.lower()
    if not value.isascii():
        if key in _ADDRESS_HEADERS or key in _ID_HEADERS or key in _DATE_HEADERS:
            raise NeedsEmailPackage(name)
        return _encoded_words(name, value)
    if "=?" in value:  # would be decoded as an encoded word by the reader
        raise NeedsEmailPackage(name)
    if key in _ADDRESS_HEADERS and not _ADDRESS.fullmatch(value):
        raise NeedsEmailPackage(name)
    if key in _ID_HEADERS and not _MSG_ID.fullmatch(value):
        raise NeedsEmailPackage(name)
    if key in _DATE_HEADERS and not _DATE.fullmatch(value):
        raise NeedsEmailPackage(name)
    return _fold_ascii(name, value)


def _qp_body(text: str) -> bytes:
    """The text as the email package's `set_content(..., cte="quoted-printable")` stores
    it: every line break (CRLF, LF, CR) one line end, a line end after the last line."""
    lines = text.encode("utf-8").splitlines()
    body = binascii.b2a_qp(b"\n".join(lines) + b"\n", istext=True)
    return body.replace(b"\n", b"\r\n")


def _part_head(subtype: str) -> bytes:
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n"
    ).encode("ascii")


def compose(headers: Sequence[tuple[str, str]], text: str, html: str | None = None) -> bytes | None:
    """The mail as bytes for SMTP DATA, or None when the email package must build it.

    `headers` in the order to write them, ours and the caller's; MIME-Version and
    the Content-* headers are added here. Raises ValueError for a header value
    with a line break (as `EmailMessage` does).
    """
    seen: set[str] = set()
    out: list[str] = []
    try:
        for name, value in headers:
            key = name.lower()
            if key in seen or key in _SKIPPED or not _NAME.fullmatch(name):
                return None
            seen.add(key)
            out.append(_header(name, value))
    except NeedsEmailPackage:
        return None
    out.append("MIME-Version: 1.0\r\n")
    head = "".join(out).encode("ascii")
    if not html:
        return head + _part_head("plain") + b"\r\n" + _qp_body(text)
    # Quoted-printable never has "==" in it, so this boundary cannot occur in a part.
    boundary = f"==============={random.randrange(10**18, 10**19)}==".encode("ascii")
    return b"".join(
        (
            head,
            b'Content-Type: multipart/alternative;\r\n boundary="' + boundary + b'"\r\n\r\n',
            b"--" + boundary + b"\r\n",
            _part_head("plain") + b"\r\n" + _qp_body(text),
            b"\r\n--" + boundary + b"\r\n",
            _part_head("html") + b"\r\n" + _qp_body(html),
            b"\r\n--" + boundary + b"--\r\n",
        )
    )
