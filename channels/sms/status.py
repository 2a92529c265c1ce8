"""Twilio's delivery status callback form -> a plain `StatusReport`.

Twilio posts MessageSid, MessageStatus and (for failures) ErrorCode; the
callback URL carries our outbox id (`?outbox=N`, see channels/sms/outbound.py)
so that a report overtaking our own record of the MessageSid still matches.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StatusReport:
    provider_id: str
    status: str  # Twilio's MessageStatus, lower-case: queued, sent, delivered, failed ...
    error_code: str | None = None
    outbox_id: int | None = None


class InvalidStatusForm(ValueError):
    pass


def parse_status(form: Mapping[str, str], query: Mapping[str, str]) -> StatusReport:
    sid = (form.get("MessageSid") or form.get("SmsSid") or "").strip()
    status = (form.get("MessageStatus") or form.get("SmsStatus") or "").strip().lower()
    if not sid or not status:
        raise InvalidStatusForm("MessageSid and MessageStatus are required")
    raw_outbox = query.get("outbox", "")
    return StatusReport(
        provider_id=sid,
        status=status,
        error_code=(form.get("ErrorCode") or "").strip() or None,
        outbox_id=int(raw_outbox) if raw_outbox.isdigit() else None,
    )
