"""Header reading that survives broken mail: every reader returns a value, never raises.

Servers deliver headers with raw 8-bit bytes, unbalanced quotes, stray lines
and impossible dates; one bad header must not cost the rest of the message,
so each reader falls back from the stdlib's structured parse to the raw text.
"""

from __future__ import annotations

import email.utils
import logging
import re
from datetime import datetime
from email.header import decode_header, make_header
from email.message import Message

from channels.email.text import decode_text

log = logging.getLogger(__name__)

_MSGID = re.compile(r"<[^<>\s]+>")
_ADDR = re.compile(r"[^\s<>\"'(),;:@\[\]]+@[^\s<>\"'(),;:@\[\]]+")
_HEADER_LINE = re.compile(rb"^[!-9;-~]+:|^[ \t]")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")


def defect_names(msg: Message) -> list[str]:
    """Class names of the defects the parser registered on parts and on header values."""
    names = [type(d).__name__ for part in msg.walk() for d in part.defects]
    # One pass over the fields: get_all() per name scans every field each
    # time, which took minutes for a message with tens of thousands of headers.
    for key, raw in msg.raw_items():
        try:
            value = msg.policy.header_fetch_parse(key, raw)
            names.extend(type(d).__name__ for d in getattr(value, "defects", ()))
        except Exception:
            names.append(f"HeaderError:{key}")
    return names


def drop_headerless_lines(raw: bytes) -> bytes:
    """Drop lines in the header block that are neither "Name: value" nor a continuation.

    The stdlib ends the header block at such a line and reads every later
    header (Date, Message-ID) as body text; one stray line must not cost those.
    """
    blank = _BLANK_LINE.search(raw)
    split_at = blank.start() if blank else len(raw)  # only the head: bodies can be megabytes
    head = raw[:split_at].split(b"\n")
    kept = [line for line in head if _HEADER_LINE.match(line)]
    if len(kept) == len(head) or not kept:
        return raw
    return b"\n".join(kept) + raw[split_at:]


def header(msg: Message, name: str, defects: list[str]) -> str | None:
    """The decoded header value; the raw string when decoding fails; None when absent.

    A header with raw 8-bit bytes is decoded from its source (UTF-8, else
    latin-1): the parser would turn those bytes into U+FFFD.
    """
    raw = next((str(v) for k, v in msg.raw_items() if k.lower() == name.lower()), None)
    if raw is None:
        return None
    if _has_escapes(raw):
        return _unescape(re.sub(r"\r?\n[ \t]", " ", raw).strip())
    try:
        return str(msg.get(name))
    except Exception as exc:
        defects.append(f"HeaderError:{name}")
        log.debug("header %s unreadable: %s", name, exc)
    try:
        return str(make_header(decode_header(raw)))
    except Exception:
        return raw


def _has_escapes(value: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in value)


def _unescape(value: str) -> str:
    """Decode raw 8-bit header bytes, which the parser keeps as surrogate escapes.

    Many clients send UTF-8 (or latin-1) in headers without encoded-words.
    """
    if not _has_escapes(value):
        return value
    return decode_text(value.encode("utf-8", "surrogateescape"), "utf-8")[0]


def first_address(msg: Message, name: str, defects: list[str]) -> tuple[str, str]:
    """(display name, addr-spec) of the header's first address, or ("", "")."""
    found = _address_list(msg, name, defects)
    return found[0] if found else ("", "")


def _address_list(msg: Message, name: str, defects: list[str]) -> list[tuple[str, str]]:
    try:
        value = msg.get(name)
        addresses = [] if value is None else list(getattr(value, "addresses", ()))
        result = [
            (_unescape(a.display_name), _unescape(a.addr_spec))
            for a in addresses
            if _ADDR.fullmatch(a.addr_spec)
        ]
        if result or value is None:
            return result
    except Exception:
        defects.append(f"HeaderError:{name}")
    raw = header(msg, name, defects) or ""
    # A broken list (unbalanced quotes, missing brackets) defeats the strict parser;
    # the lenient legacy one still finds what looks like an address.
    pairs = [(n.strip(), a.strip()) for n, a in email.utils.getaddresses([raw])]
    found = [(n, a) for n, a in pairs if _ADDR.fullmatch(a)]
    return found or [("", a) for a in _ADDR.findall(raw)]


def addresses(msg: Message, name: str, defects: list[str]) -> list[str]:
    return [a for _, a in _address_list(msg, name, defects)]


def message_ids(value: str | None) -> list[str]:
    """Message-IDs in In-Reply-To / References, in order; bare ids with "@" are bracketed."""
    if not value:
        return []
    found = _MSGID.findall(value)
    if not found:
        found = [f"<{tok.strip('<>')}>" for tok in value.split() if "@" in tok]
    return found


def first_message_id(value: str) -> str:
    ids = message_ids(value)
    if ids:
        return ids[0]
    value = value.strip().strip("<>").strip()
    return f"<{value}>" if value else ""


def header_date(msg: Message, defects: list[str]) -> datetime | None:
    try:
        value = msg.get("Date")
        parsed = getattr(value, "datetime", None)
        if isinstance(parsed, datetime):
            return parsed
    except Exception:
        defects.append("HeaderError:Date")
    raw = header(msg, "Date", defects)
    if raw:
        try:
            return email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            pass  # the header parser has already registered InvalidDateDefect
    return None


def return_path(value: str | None) -> str | None:
    """The envelope sender; "" for the null sender "<>" that bounces and auto-replies use."""
    if value is None:
        return None
    inner = value.strip()
    if inner.startswith("<") and inner.endswith(">"):
        inner = inner[1:-1]
    return inner.strip()
