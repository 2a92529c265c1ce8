"""MIME part walking: the readable body, attachments and the parts of a delivery report."""

from __future__ import annotations

import email
import email.policy
import hashlib
import logging
import mimetypes
import re
from email.message import EmailMessage, Message, MIMEPart
from typing import Any

from channels.base import AttachmentRef
from channels.email.attachments import AttachmentStore
from channels.email.errors import LimitExceeded
from channels.email.headers import header
from channels.email.text import MAX_QUOTE_DEPTH, MAX_TEXT_CHARS, decode_text, html_to_text

log = logging.getLogger(__name__)


def is_dsn(msg: Message) -> bool:
    return msg.get_content_type() == "multipart/report" and (
        str(msg.get_param("report-type", "")).lower() == "delivery-status"
    )


def _decoded(part: Message) -> tuple[str, str | None]:
    """A text part's content, tolerant of bad transfer encodings and charsets."""
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        payload = None
    if not isinstance(payload, bytes):
        raw = part.get_payload()
        payload = raw.encode("utf-8", "replace") if isinstance(raw, str) else b""
    try:
        charset = part.get_content_charset()
    except Exception:
        charset = None
    text, wrong = decode_text(payload, charset)
    return text, ("CharsetMismatch" if wrong and not payload.isascii() else None)


def _body_part(msg: EmailMessage) -> MIMEPart | None:
    try:
        return msg.get_body(preferencelist=("plain", "html"))
    except Exception:
        return None


def body_text(
    msg: EmailMessage, *, max_chars: int = MAX_TEXT_CHARS, max_quote_depth: int = MAX_QUOTE_DEPTH
) -> tuple[str, str | None]:
    """The readable body: text/plain, else text from text/html, else "".

    `LimitExceeded` when the text is longer than `max_chars` or its HTML
    quotes nest deeper than `max_quote_depth`.
    """
    part = _body_part(msg)
    if part is None:
        return "", None
    text, defect = _decoded(part)
    if part.get_content_subtype() == "html":
        text = html_to_text(text, max_chars=max_chars, max_quote_depth=max_quote_depth)
    elif len(text) > max_chars:
        raise LimitExceeded(f"body text over the limit of {max_chars} characters")
    return text.replace("\r\n", "\n").strip(), defect


def extract_attachments(
    msg: EmailMessage,
    max_bytes: int,
    store: AttachmentStore | None,
    defects: list[str],
) -> tuple[list[AttachmentRef], list[dict[str, Any]]]:
    """Every non-body part with a filename or non-text content becomes an AttachmentRef.

    Inline images count: a screenshot pasted into Outlook is as much the
    customer's message as a file; storage by content makes repeated logos cheap.
    The files (up to `max_bytes` each) are written to `store` when one is given.
    """
    refs, skipped, blobs = attachment_parts(msg, max_bytes, defects)
    if store is not None:
        for data in blobs.values():
            store.put(data)
    return refs, skipped


def attachment_parts(
    msg: EmailMessage, max_bytes: int, defects: list[str]
) -> tuple[list[AttachmentRef], list[dict[str, Any]], dict[str, bytes]]:
    """The attachments as references, the ones too large to keep, and the contents
    to keep by sha256 (written by the caller: the parser writes nothing itself,
    so a parse that is killed half-way leaves no files behind)."""
    body = _body_part(msg)
    refs: list[AttachmentRef] = []
    skipped: list[dict[str, Any]] = []
    blobs: dict[str, bytes] = {}
    for index, part in enumerate(_leaves(msg)):
        if part is body:
            continue
        ctype = part.get_content_type()
        if ctype in ("message/delivery-status", "text/rfc822-headers"):
            continue  # structured DSN data, read by delivery_report
        filename = _filename(part, defects)
        if not filename and part.get_content_maintype() in ("text", "multipart"):
            continue
        data = _part_bytes(part)
        digest = hashlib.sha256(data).hexdigest()
        name = filename or f"attachment-{index}{mimetypes.guess_extension(ctype) or '.bin'}"
        ref = AttachmentRef(filename=name, content_type=ctype, size=len(data), sha256=digest)
        refs.append(ref)
        if len(data) > max_bytes:
            # Referenced (an agent sees that a file came) but not kept; the hub can
            # tell the customer or fetch it again from the mailbox by hand.
            skipped.append(
                {
                    "filename": name,
                    "content_type": ctype,
                    "size": len(data),
                    "sha256": digest,
                    "reason": "too_large",
                }
            )
        else:
            blobs[digest] = data
    return refs, skipped, blobs


def _leaves(part: Message) -> list[Message]:
    """Leaf parts; message/rfc822 is a leaf (one .eml attachment, not its inner parts)."""
    if part.is_multipart() and part.get_content_maintype() == "multipart":
        payload = part.get_payload()
        children = payload if isinstance(payload, list) else []
        return [leaf for c in children if isinstance(c, Message) for leaf in _leaves(c)]
    return [part]


def _filename(part: Message, defects: list[str]) -> str:
    try:
        name = part.get_filename() or ""
    except Exception:
        defects.append("BadFilename")
        return ""
    return re.split(r"[\\/]", str(name))[-1].strip()


def _part_bytes(part: Message) -> bytes:
    try:
        if part.get_content_maintype() == "message":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                return inner[0].as_bytes()
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            return payload
    except Exception:
        pass
    raw = part.get_payload()
    return raw.encode("utf-8", "replace") if isinstance(raw, str) else b""


def delivery_report(msg: Message) -> tuple[str, dict[str, str] | None]:
    """The delivery-status part as text and the returned original's headers.

    Routing (routing/dsn.py) reads the per-recipient fields from the text and
    matches the bounce to our outgoing mail by the original "message-id";
    parsing the fields there keeps one DSN reader, not two.
    """
    status_text = ""
    original: dict[str, str] | None = None
    for part in _leaves(msg):
        ctype = part.get_content_type()
        try:
            if ctype == "message/delivery-status" and not status_text:
                blocks = part.get_payload()
                if isinstance(blocks, list):
                    groups = [b.as_string().strip() for b in blocks if isinstance(b, Message)]
                    status_text = "\n\n".join(groups)
                else:
                    status_text = _decoded(part)[0]
            elif ctype in ("message/rfc822", "text/rfc822-headers") and original is None:
                inner = part.get_payload()
                if ctype == "text/rfc822-headers":
                    headers = _decoded(part)[0]
                    inner = [email.message_from_string(headers, policy=email.policy.default)]
                if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                    original = {}
                    for key in inner[0]:
                        value = header(inner[0], key, [])
                        original.setdefault(key.lower(), " ".join((value or "").split()))
        except Exception as exc:
            log.debug("unreadable DSN part %s: %s", ctype, exc)
    return status_text, original
