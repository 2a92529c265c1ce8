"""Limits on one inbound message, checked before the work each one guards.

Every channel is open to anyone on the internet, and the stdlib parser has
costs that grow faster than the input: thousands of encoded words in one
header take gigabytes, tens of thousands of headers take minutes, nested
<blockquote>s make the plain-text conversion grow with the square of the
depth. A message over a limit is refused with the limit in the reason (the
quarantine keeps it raw, so nothing is lost) and the mailbox flows on.

`check_raw` scans the bytes (linear, regex in C) before any parsing;
`check_tree` walks the parsed MIME tree before any part is decoded; the text
limits are enforced while the text is produced (channels/email/text.py) and
the attachment limits before anything is written. The parser itself runs in
a worker process with a time and a memory limit (parser_pool.py) for
whatever these checks do not foresee.
"""

from __future__ import annotations

import re
from email.message import Message

from pydantic import BaseModel, ConfigDict, Field

from channels.email.errors import LimitExceeded
from channels.email.text import MAX_QUOTE_DEPTH, MAX_TEXT_CHARS

MB = 1_000_000
# Starts the quarantine reason of a message kept with its header only (too big
# to fetch): a retry must not store the header as if it were the message.
HEADER_ONLY = "header only: "


class MailLimits(BaseModel):
    """The `email.limits` section: safe defaults that real mail stays far below."""

    model_config = ConfigDict(extra="forbid")

    # The whole message as fetched. Providers cap mail at 25-50 MB; bigger
    # ones are quarantined with their header only (never fetched whole).
    max_message_bytes: int = Field(50 * MB, ge=1024)
    # Header fields in one header block (real mail: 20-150, Received chains included).
    max_headers: int = Field(1000, ge=10)
    # One header field, folded lines joined (a To: of 500 recipients is ~20 KB).
    max_header_bytes: int = Field(100_000, ge=1000)
    # RFC 2047 encoded words in all headers (the stdlib needs ~70 KB per word
    # when thousands share one header).
    max_encoded_words: int = Field(1000, ge=10)
    # multipart nesting and MIME parts in all (mail clients nest 3-5 deep).
    max_mime_depth: int = Field(20, ge=2)
    max_mime_parts: int = Field(500, ge=2)
    # Characters of body text (after HTML → text), and <blockquote> nesting.
    max_text_chars: int = Field(MAX_TEXT_CHARS, ge=1000)
    max_quote_depth: int = Field(MAX_QUOTE_DEPTH, ge=1)
    # Attachment bytes one message may write to the store, and the store's quota
    # (0: no quota). A message over either is quarantined, not half-stored.
    max_attachment_bytes_per_message: int = Field(50 * MB, ge=0)
    attachments_quota_bytes: int = Field(20_000 * MB, ge=0)
    # The parser runs in worker processes: how many, and what one message may
    # cost there before the worker is killed and the message quarantined.
    parser_workers: int = Field(2, ge=1, le=32)
    parser_timeout_seconds: float = Field(30.0, gt=0)
    parser_memory_bytes: int = Field(1024 * MB, ge=64 * MB)


_BLANK = re.compile(rb"\r?\n\r?\n")
# A header line: a field name and a colon; continuation lines start with blanks.
_FIELD = re.compile(rb"^[!-9;-~]+:", re.MULTILINE)
_ENCODED_WORD = re.compile(rb"=\?[^?\s]{1,80}\?[bBqQ]\?")
# The longest run of bytes without a line end that is not a continuation:
# found by splitting, which is linear and done by C.


def check_raw(raw: bytes, limits: MailLimits) -> None:
    """Refuse a message whose bytes are over a limit; costs one pass over them."""
    size = len(raw)
    if size > limits.max_message_bytes:
        raise LimitExceeded(
            f"message of {size} bytes is over the limit of {limits.max_message_bytes} bytes"
        )
    blank = _BLANK.search(raw)
    head = raw[: blank.start()] if blank else raw
    fields = len(_FIELD.findall(head))
    if fields > limits.max_headers:
        raise LimitExceeded(f"{fields} header fields, over the limit of {limits.max_headers}")
    longest = _longest_field(head)
    if longest > limits.max_header_bytes:
        raise LimitExceeded(
            f"a header field of {longest} bytes, over the limit of {limits.max_header_bytes}"
        )
    # Counted over the whole message: attached messages and MIME part headers
    # are decoded too, and a base64 body cannot contain "=?" at all.
    words = len(_ENCODED_WORD.findall(raw))
    if words > limits.max_encoded_words:
        raise LimitExceeded(
            f"{words} encoded words in headers, over the limit of {limits.max_encoded_words}"
        )


def _longest_field(head: bytes) -> int:
    longest = current = 0
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t"):
            current += len(line)
        else:
            current = len(line)
        longest = max(longest, current)
    return longest


def check_tree(msg: Message, limits: MailLimits) -> None:
    """Refuse a parsed message whose MIME tree is too deep or has too many parts.

    Iterative, so a tree deeper than Python's recursion limit is measured too.
    """
    parts = 0
    stack: list[tuple[Message, int]] = [(msg, 1)]
    while stack:
        part, depth = stack.pop()
        parts += 1
        if depth > limits.max_mime_depth:
            raise LimitExceeded(
                f"MIME parts nested {depth} deep, over the limit of {limits.max_mime_depth}"
            )
        if parts > limits.max_mime_parts:
            raise LimitExceeded(f"more than {limits.max_mime_parts} MIME parts")
        payload = part.get_payload() if part.is_multipart() else None
        if isinstance(payload, list):
            stack.extend((child, depth + 1) for child in payload if isinstance(child, Message))


def check_attachments(total: int, limits: MailLimits) -> None:
    if total > limits.max_attachment_bytes_per_message:
        raise LimitExceeded(
            f"attachments of {total} bytes, over the limit of "
            f"{limits.max_attachment_bytes_per_message} bytes per message"
        )
