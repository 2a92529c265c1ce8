"""Delivery status notifications (RFC 3464) as plain data.

A bounce is only useful to the hub when it says *which* recipient failed and
*how* (5.x.x permanent, 4.x.x temporary), so the report text is turned into
one `RecipientStatus` per recipient here, with no I/O and no knowledge of
MIME: the email adapter hands over the delivery-status part as text, and for
bounces that are not multipart/report (old MTAs, "MAILER-DAEMON" prose) the
readable body. Real reports are sloppy — folded lines, any case, missing
blank lines between recipients, the status only in the Diagnostic-Code — so
the parser is tolerant and never raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# RFC 3463 enhanced status code: class.subject.detail
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_FAILURE_STATUS = re.compile(r"\b([45])\.(\d{1,3})\.(\d{1,3})\b")
_ADDRESS = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")
_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9-]*)\s*:\s*(.*)$")
_DIAGNOSTIC_MAX = 500


@dataclass(frozen=True, slots=True)
class RecipientStatus:
    """What the reporting MTA says about one recipient.

    `status` is the enhanced status code ("5.1.1") or "" when the report has
    none; `action` is lower case ("failed", "delayed", "delivered", ...).
    `address` is the Final-Recipient (else the Original-Recipient);
    `original_address` the Original-Recipient, the address as it was given to
    the mail system, when it differs ("" otherwise): after a forwarder or
    an alias the final address is not the one we wrote to.
    """

    address: str
    status: str
    action: str
    diagnostic: str = ""
    original_address: str = ""

    @property
    def permanent(self) -> bool:
        """A 5.x.x that did not get delivered: the address will not work again."""
        return self.status.startswith("5") and self.action in ("failed", "")

    @property
    def temporary(self) -> bool:
        return self.status.startswith("4") or self.action == "delayed"


@dataclass(frozen=True, slots=True)
class BounceInfo:
    """A bounce as the hub needs it: which message, which recipients, how bad.

    `original_message_id` is the Message-ID of the message that bounced, as
    found in the returned headers, in angle brackets ("<id@host>"), or None
    when the report did not return it.
    """

    original_message_id: str | None
    recipients: tuple[RecipientStatus, ...]

    @property
    def permanent(self) -> bool:
        return any(r.permanent for r in self.recipients)

    def summary(self) -> str:
        """One line for the history: "a@x 5.1.1 failed; b@y 4.2.2 delayed"."""
        return "; ".join(
            " ".join(p for p in (r.address, r.status, r.action) if p) for r in self.recipients
        )


def _unfold(text: str) -> list[str]:
    """Lines with RFC 5322 folding undone; blank lines kept as group separators."""
    lines: list[str] = []
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if raw[:1] in (" ", "\t") and raw.strip() and lines and lines[-1]:
            lines[-1] = f"{lines[-1]} {raw.strip()}"
        else:
            lines.append(raw.rstrip())
    return lines


def _typed_value(value: str) -> str:
    """ "rfc822; <a@b>" -> "a@b", "smtp; 550 ..." -> "550 ..." (whitespace collapsed)."""
    if ";" in value:
        kind, rest = value.split(";", 1)
        if kind.strip() and " " not in kind.strip():
            value = rest
    return " ".join(value.split())


def _address(value: str) -> str:
    found = _ADDRESS.search(value)
    return found.group(0).lower() if found else _typed_value(value).strip("<>").lower()


def _status_in(text: str) -> str:
    found = _STATUS.search(text)
    return found.group(0) if found else ""


def _default_action(status: str) -> str:
    return {"5": "failed", "4": "delayed", "2": "delivered"}.get(status[:1], "")


def _record(fields: dict[str, str]) -> RecipientStatus | None:
    address = fields.get("final-recipient") or fields.get("original-recipient")
    if not address:
        return None
    diagnostic = _typed_value(fields.get("diagnostic-code", ""))[:_DIAGNOSTIC_MAX]
    status = _status_in(fields.get("status", "")) or _status_in(diagnostic)
    action = fields.get("action", "").split()[0].lower() if fields.get("action") else ""
    final = _address(address)
    original = _address(fields["original-recipient"]) if "original-recipient" in fields else ""
    return RecipientStatus(
        final,
        status,
        action or _default_action(status),
        diagnostic,
        "" if original == final else original,
    )


def parse_dsn(text: str) -> list[RecipientStatus]:
    """The per-recipient fields of a message/delivery-status body, in report order.

    A recipient group starts at a blank line or at a recipient field that
    would repeat one already seen, so reports that forget the blank line
    between recipients still come out one record per recipient. Per-message
    fields (Reporting-MTA, Arrival-Date) carry no recipient and are dropped.
    """
    result: list[RecipientStatus] = []
    fields: dict[str, str] = {}

    def flush() -> None:
        record = _record(fields)
        if record is not None:
            result.append(record)
        fields.clear()

    for line in _unfold(text):
        if not line.strip():
            flush()
            continue
        match = _FIELD.match(line.strip())
        if match is None:
            continue
        name, value = match.group(1).lower(), match.group(2).strip()
        starts_new = name == "final-recipient" and "final-recipient" in fields
        starts_new |= name == "original-recipient" and (
            "original-recipient" in fields
            or ("final-recipient" in fields and ("action" in fields or "status" in fields))
        )
        if starts_new:
            flush()
        fields.setdefault(name, value)
    flush()
    return result


def parse_plain_bounce(text: str) -> list[RecipientStatus]:
    """Recipients of a human-readable bounce ("MAILER-DAEMON" prose, no report part).

    Such bodies follow no standard, so only what is unambiguous is taken: an
    enhanced status code, with the nearest address before it (Postfix writes
    "<a@b>: host ... said: 550 5.1.1 ...", Exim "RCPT TO:<a@b>: 550 5.1.1").
    A body without a 4.x.x or 5.x.x code is not treated as a bounce at all.
    """
    result: dict[str, RecipientStatus] = {}
    for found in _FAILURE_STATUS.finditer(text):
        before = _ADDRESS.findall(text, 0, found.start())
        if not before:
            continue
        address = before[-1].lower()
        if address in result:
            continue
        line_start = text.rfind("\n", 0, found.start()) + 1
        line_end = text.find("\n", found.end())
        line = text[line_start : len(text) if line_end < 0 else line_end]
        status = found.group(0)
        diagnostic = " ".join(line.split())[:_DIAGNOSTIC_MAX]
        result[address] = RecipientStatus(address, status, _default_action(status), diagnostic)
    return list(result.values())
