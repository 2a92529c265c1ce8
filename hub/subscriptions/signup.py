"""Newsletter sign-up with double opt-in.

`POST /subscribe` with an address sends a confirmation mail through the
outbox carrying a signed link; only the click on that page (a POST: mail
scanners fetch GET links) records the opt-in, with its source and time. The
answer to a sign-up is the same whether the address is known, new, already
subscribed or throttled, so the form cannot be used to test which addresses
are customers. An unknown address becomes a lead with just that identity
(as an unknown sender of a mail does): the outbox sends to customers.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from channels.base import Channel
from hub.config import Settings
from hub.errors import Conflict, Invalid
from hub.outbox.queue import enqueue
from hub.records.consent import record_consent
from hub.records.identity import InvalidIdentity, normalize_email
from hub.store.models import ConsentState, CustomerKind, IdentityKind, utcnow
from hub.store.tables import customer_t, identity_t
from hub.subscriptions.tokens import (
    CONFIRM_SIGNUP,
    InvalidToken,
    make_token,
    public_base,
    read_token,
)
from hub.subscriptions.unsubscribe import states_in_force
from hub.templating.defaults import system_template
from hub.templating.render import render

NEWSLETTER = "newsletter"
LOCALES = ("de", "en")
# Confirmation mails to one address per hour, whoever asks: the form must
# not become a way to flood someone's inbox.
PER_ADDRESS_PER_HOUR = 3


class SignupUnavailable(Conflict):
    """Sign-up needs a token key and a mailbox that can send (409 until configured)."""


@dataclass(frozen=True, slots=True)
class Confirmed:
    customer_id: int
    newly: bool  # False: the opt-in was already in force
    team_id: int | None


class Throttle:
    """Sliding one-hour windows per key, in memory per node (like the login throttle)."""

    def __init__(self, per_hour: int, size: int = 100_000) -> None:
        self.per_hour = per_hour
        self.size = size
        self._hits: dict[str, deque[float]] = {}

    def allow(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        hits = self._hits.get(key)
        if hits is None:
            if len(self._hits) >= self.size:
                self._hits.pop(next(iter(self._hits)))
            hits = self._hits[key] = deque()
        while hits and hits[0] <= now - 3600:
            hits.popleft()
        if len(hits) >= self.per_hour:
            return False
        hits.append(now)
        return True


def sending_mailbox(settings: Settings) -> tuple[str, str]:
    """(mailbox name, From address) for confirmations; SignupUnavailable if none can send."""
    if len(settings.subscriptions.token_key) < 16:
        raise SignupUnavailable("sign-up is not configured: set subscriptions.token_key")
    wanted = settings.subscriptions.signup_mailbox
    for box in settings.email.mailboxes:
        if box.smtp is not None and (not wanted or box.name == wanted):
            return box.name, box.address
    raise SignupUnavailable("sign-up is not configured: no mailbox can send (email.mailboxes)")


def check_address(raw: str) -> str:
    try:
        return normalize_email(raw).value
    except InvalidIdentity as exc:
        raise Invalid(f"email: {exc}") from None


async def _customer_for(
    conn: AsyncConnection, address: str, raw: str, name: str, team_id: int
) -> tuple[int, int]:
    """(customer id, identity id) holding the address; a new lead when nobody does."""
    found = (
        await conn.execute(
            select(identity_t.c.customer_id, identity_t.c.id).where(
                identity_t.c.kind == IdentityKind.EMAIL.value, identity_t.c.value == address
            )
        )
    ).first()
    if found is not None:
        return found.customer_id, found.id
    now = utcnow()
    customer_id = (
        await conn.execute(
            customer_t.insert()
            .values(
                kind=CustomerKind.LEAD.value,
                name=name,
                team_id=team_id,
                custom={},
                created_at=now,
                updated_at=now,
            )
            .returning(customer_t.c.id)
        )
    ).scalar_one()
    identity_id = (
        await conn.execute(
            identity_t.insert()
            .values(
                customer_id=customer_id,
                kind=IdentityKind.EMAIL.value,
                value=address,
                raw=raw,
                primary=True,
                verified=True,
                soft_bounces=0,
                created_at=now,
            )
            .returning(identity_t.c.id)
        )
    ).scalar_one()
    return customer_id, identity_id


async def request_signup(
    conn: AsyncConnection,
    settings: Settings,
    *,
    address: str,
    raw: str,
    name: str,
    locale: str,
    team_id: int,
) -> int | None:
    """Queue the confirmation mail; the outbox id, or None when nothing was sent
    (the person had opted out before their data was erased)."""
    mailbox, sender = sending_mailbox(settings)
    customer_id, identity_id = await _customer_for(conn, address, raw, name, team_id)
    token = make_token(
        settings.subscriptions.token_key, customer_id, identity_id, None, purpose=CONFIRM_SIGNUP
    )
    parts = system_template("signup-confirmation", locale if locale in LOCALES else "en")
    rendered = render(
        parts, {"name": name, "confirm_url": f"{public_base(settings)}/subscribe/confirm/{token}"}
    )
    try:
        queued = await enqueue(
            conn,
            customer_id=customer_id,
            conversation_id=None,
            channel=Channel.EMAIL,
            sender=sender,
            recipient=address,
            body=rendered.text,
            subject=rendered.subject,
            author_id=None,
            mailbox=mailbox,
            meta={"kind": "signup_confirmation"},
            suppression_key=settings.privacy.suppression_key,
        )
    except Conflict:
        return None
    return queued.outbox_id


def read_confirmation(settings: Settings, token: str, now: float | None = None) -> tuple[int, int]:
    """(customer id, issued hour) of a confirmation link still valid; InvalidToken otherwise."""
    key = settings.subscriptions.token_key
    if len(key) < 16:
        raise InvalidToken()
    claims = read_token(key, token, purpose=CONFIRM_SIGNUP)
    hours = ((time.time() if now is None else now) / 3600) - claims.issued_hour
    if hours > settings.subscriptions.confirm_days * 24 + 1:
        raise InvalidToken("this confirmation link has expired; please sign up again")
    return claims.customer_id, claims.issued_hour


async def confirm(conn: AsyncConnection, customer_id: int, issued_hour: int) -> Confirmed | None:
    """Record the opt-in (idempotent); None when the customer no longer exists."""
    row = (
        await conn.execute(
            select(customer_t.c.id, customer_t.c.team_id, customer_t.c.merged_into_id).where(
                customer_t.c.id == customer_id
            )
        )
    ).first()
    if row is None:
        return None
    if row.merged_into_id is not None:
        return await confirm(conn, row.merged_into_id, issued_hour)
    if (await states_in_force(conn, customer_id, "email")).get(NEWSLETTER) == "opted_in":
        return Confirmed(customer_id, False, row.team_id)
    asked = datetime.fromtimestamp(issued_hour * 3600, UTC).strftime("%Y-%m-%d %H:00")
    source = f"newsletter sign-up, double opt-in (asked {asked} UTC, confirmed by link)"
    await record_consent(
        conn, customer_id, "email", NEWSLETTER, ConsentState.OPTED_IN.value, source
    )
    return Confirmed(customer_id, True, row.team_id)
