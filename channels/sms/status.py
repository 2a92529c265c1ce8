"""Twilio's delivery status callback form -> a plain `DeliveryReport`, and Twilio's status words.

Twilio posts MessageSid, MessageStatus and (for failures) ErrorCode; the
callback URL carries our outbox id (`?outbox=N`, see channels/sms/outbound.py)
so that a report overtaking our own record of the MessageSid still matches.
"""

from __future__ import annotations

from collections.abc import Mapping

from channels.base import Channel, DeliveryReport, StatusVocabulary

# Twilio: "Attempt to send to unsubscribed recipient" (the number texted STOP to Twilio).
ERROR_UNSUBSCRIBED = "21610"

# Twilio's MessageStatus values, by how far a message got.
SMS_STATUSES = StatusVocabulary(
    ranks={
        "queued": 0,
        "scheduled": 1,
        "accepted": 1,
        "sending": 1,
        "sent": 2,
        "delivered": 3,
        "read": 4,
    },
    final=frozenset({"undelivered", "failed", "canceled"}),
    failed=frozenset({"undelivered", "failed", "canceled"}),
    opt_out_errors=frozenset({ERROR_UNSUBSCRIBED}),
    provider="twilio",
)


# Outbox ids are 32-bit on PostgreSQL: a larger one cannot be ours.
MAX_OUTBOX_ID = 2**31 - 1


class InvalidStatusForm(ValueError):
    pass


def parse_status(form: Mapping[str, str], query: Mapping[str, str]) -> DeliveryReport:
    sid = (form.get("MessageSid") or form.get("SmsSid") or "").strip()
    status = (form.get("MessageStatus") or form.get("SmsStatus") or "").strip().lower()
    if not sid or not status:
        raise InvalidStatusForm("MessageSid and MessageStatus are required")
    raw_outbox = query.get("outbox", "")
    outbox_id: int | None = None
    if raw_outbox:
        # Only ids we hand out: ASCII digits within the database's integer range.
        if not (raw_outbox.isascii() and raw_outbox.isdigit()) or not (
            1 <= int(raw_outbox) <= MAX_OUTBOX_ID
        ):
            raise InvalidStatusForm(f"outbox must be an id we sent, not {raw_outbox[:40]!r}")
        outbox_id = int(raw_outbox)
    return DeliveryReport(
        channel=Channel.SMS,
        provider_id=sid,
        status=status,
        error_code=(form.get("ErrorCode") or "").strip() or None,
        outbox_id=outbox_id,
    )
