"""Rules over inbound email that no person wrote: is it a bounce, an auto-reply?

Pure predicates over an `InboundContact`: no decision, no context, no
state, so each rule is tested with a plain contact and reused where an
answer is needed without routing (the hub prefetches what a bounce returns
with `bounce_of`). The steps that act on these answers are in
routing/mail_steps.py; the mail loop rule, which has to remember senders,
is routing/loop_guard.py.

The rules read the metadata the email adapter fills in, named by
`channels.base.MetaKey` (a missing key or None means "no such header"; an
empty or blank header value counts as absent, except for `RETURN_PATH`).
`InboundContact.sender` is the From address (with or without display name).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from email.utils import parseaddr
from functools import lru_cache
from typing import Any

from channels.base import Channel, InboundContact, MetaKey
from routing.dsn import BounceInfo, parse_dsn, parse_plain_bounce

BULK_PRECEDENCE = frozenset({"bulk", "junk", "list"})
DAEMON_LOCALPARTS = frozenset({"mailer-daemon", "postmaster"})


def _header(contact: InboundContact, key: MetaKey) -> str | None:
    value = contact.metadata.get(key)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


# `local@domain` of dot-atoms and LDH labels, alone or behind a display name of plain
# words (`Jane Doe <jane@example.org>`): parseaddr reads these as exactly that address.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = rf"[A-Za-z0-9_+\-]+(?:\.[A-Za-z0-9_+\-]+)*@{_LABEL}(?:\.{_LABEL})+"
_PLAIN_FROM = re.compile(rf"[A-Za-z0-9]+(?: [A-Za-z0-9]+)* <({_ADDRESS})>|({_ADDRESS})")


# Pure; parseaddr costs ~20 us, and each email of a batch asks up to 3 times (most
# senders of a batch are first-seen: the plain forms skip the parser).
@lru_cache(maxsize=4096)
def sender_address(raw: str) -> str:
    """The bare, lower-case address of a From value ("Jane <J@x>" -> "j@x")."""
    text = raw.strip()
    plain = _PLAIN_FROM.fullmatch(text)
    if plain is not None:
        return (plain.group(1) or plain.group(2)).lower()
    return parseaddr(raw)[1].strip().lower() or text.lower()


def autoreply_reason(contact: InboundContact) -> str | None:
    """Why this email was sent by a program rather than a person, or None.

    Public so the hub can explain a classification (and tests can check the
    header matrix) without running a step.
    """
    auto_submitted = _header(contact, MetaKey.AUTO_SUBMITTED)
    if auto_submitted is not None:
        # "auto-replied; owner-email=..." -> "auto-replied"
        keyword = auto_submitted.split(";", 1)[0].strip().lower()
        if keyword != "no":
            return f"auto-submitted: {keyword}"
    precedence = _header(contact, MetaKey.PRECEDENCE)
    if precedence is not None and precedence.lower() in BULK_PRECEDENCE:
        return f"precedence: {precedence.lower()}"
    x_autoreply = _header(contact, MetaKey.X_AUTOREPLY)
    if x_autoreply is not None:
        return f"x-autoreply: {x_autoreply}"
    suppress = _header(contact, MetaKey.X_AUTO_RESPONSE_SUPPRESS)
    if suppress is not None:
        return f"x-auto-response-suppress: {suppress}"
    return_path = contact.metadata.get(MetaKey.RETURN_PATH)
    if return_path is not None and str(return_path).strip() in ("", "<>"):
        return "null sender"
    if contact.metadata.get(MetaKey.IS_DSN):
        # Only reached when the bounce step is not configured: a DSN is
        # machine mail all the same and must not open a conversation.
        return "delivery status notification"
    return None


def _original_message_id(headers: Any) -> str | None:
    if not isinstance(headers, Mapping):
        return None
    for key, value in headers.items():
        if str(key).strip().lower() == "message-id" and value is not None:
            # Bracketed like the email adapter's provider ids, so the hub can
            # look it up among the Message-IDs it sent without normalising.
            bare = "".join(str(value).split()).strip("<>")
            return f"<{bare}>" if bare else None
    return None


def bounce_of(contact: InboundContact) -> BounceInfo | None:
    """The bounce this email reports, or None when it is not a bounce.

    A multipart/report is trusted as a report. A mail from MAILER-DAEMON or
    postmaster without one counts only when its body reads like a delivery
    report (RFC 3464 fields, or a status code after an address): postmasters
    also write ordinary mail, which must reach an agent.
    """
    if contact.channel is not Channel.EMAIL:
        return None
    is_dsn = bool(contact.metadata.get(MetaKey.IS_DSN))
    if not is_dsn and sender_address(contact.sender).split("@", 1)[0] not in DAEMON_LOCALPARTS:
        return None
    text = str(contact.metadata.get(MetaKey.DSN_TEXT) or "") or contact.text
    recipients = parse_dsn(text) or parse_plain_bounce(contact.text)
    if not recipients and not is_dsn:
        return None
    message_id = _original_message_id(contact.metadata.get(MetaKey.DSN_ORIGINAL_HEADERS))
    return BounceInfo(message_id, tuple(recipients))
