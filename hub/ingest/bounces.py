"""What a bounce does to the history, within the ingest batch that stores it.

Routing (routing/mail_steps.py) recognises a delivery report and finds the
message of ours it returns; here, in the batch's transaction, the hub
decides what the report may change (only that message's recipient counts)
and writes it: the address marked undeliverable or its soft bounces
counted, the message `bounced` and its outbox row failed, and a mail the
address itself sends clearing the mark again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, or_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from channels.base import Channel
from channels.email.status import BOUNCED, EMAIL_STATUSES
from hub.events.kinds import interaction_delivery
from hub.ingest.context import BatchContext, Prepared
from hub.outbox.queue import OutboxStatus
from hub.records.identity import InvalidIdentity, normalize_email
from hub.store.models import IdentityKind, UTCDateTime
from hub.store.sqlite_driver import defer_many, execute_many
from hub.store.tables import identity_t, interaction_t, outbox_t
from routing.base import DecisionKey
from routing.dsn import RecipientStatus

UTCDT = UTCDateTime()


def _bind(name: str, type_: Any = None) -> Any:
    return bindparam(name, type_=type_)


_EMAIL_IDENTITY = (identity_t.c.kind == IdentityKind.EMAIL.value) & (
    identity_t.c.value == _bind("addr")
)
_MARK_UNDELIVERABLE = (
    update(identity_t)
    .where(_EMAIL_IDENTITY)
    .values(undeliverable_at=_bind("marked_at", UTCDT), undeliverable_reason=_bind("why"))
)
_COUNT_SOFT_BOUNCE = (
    update(identity_t).where(_EMAIL_IDENTITY).values(soft_bounces=identity_t.c.soft_bounces + 1)
)
# Only rows that carry a mark: for the common case (nothing to clear) this is
# an index lookup that writes nothing, not a row update per inbound mail.
_CLEAR_MARK = (
    update(identity_t)
    .where(_EMAIL_IDENTITY)
    .where(or_(identity_t.c.undeliverable_at.is_not(None), identity_t.c.soft_bounces != 0))
    .values(undeliverable_at=None, undeliverable_reason=None, soft_bounces=0)
)
_FAIL_BOUNCED_OUTBOX = (
    update(outbox_t)
    .where(outbox_t.c.interaction_id == _bind("iid"))
    .values(
        status=OutboxStatus.FAILED.value,
        last_error=_bind("error"),
        updated_at=_bind("now", UTCDT),
    )
)
# A bounce does not overwrite a status that is already final (a message we
# never sent cannot bounce; a second report of the same bounce changes nothing).
_NOT_BOUNCEABLE = EMAIL_STATUSES.all_final
REASON_MAX = 500


def _reason(r: RecipientStatus) -> str:
    return f"{r.status} {r.diagnostic}".strip()[:REASON_MAX]


def _email(address: str) -> str | None:
    try:
        return normalize_email(address).value
    except InvalidIdentity:
        return None  # matches no identity: those were all normalised when stored


@dataclass(frozen=True, slots=True)
class Bounce:
    """What a bounce may act on: the message of ours it returns, the address that
    message went to, and what the report says about that address."""

    interaction_id: int
    address: str
    statuses: tuple[RecipientStatus, ...]

    @property
    def failed(self) -> list[RecipientStatus]:
        return [r for r in self.statuses if r.permanent]

    @property
    def delayed(self) -> bool:
        return any(r.temporary for r in self.statuses)


def vet_bounce(item: Prepared, ctx: BatchContext) -> Bounce | None:
    """The part of a bounce that concerns a message we sent, or None (then why, in its meta).

    Anyone can send a delivery report, and backscatter of spam that forged
    our domain names addresses we never wrote to: only a report that returns
    the Message-ID of one of our messages (routing found it) counts, and of
    its recipients only the one that message was sent to.
    """
    decision = item.decision
    assert decision is not None
    if decision.bounce is None:
        return None
    iid = decision.meta.get(DecisionKey.BOUNCED_INTERACTION)
    recipient = ctx.sent_recipients.get(iid) if isinstance(iid, int) else None
    if iid is None or recipient is None:
        decision.meta[DecisionKey.BOUNCE_IGNORED] = "no matching sent message"
        return None
    addr = _email(recipient)
    statuses = tuple(
        r
        for r in decision.bounce.recipients
        if addr is not None and addr in (_email(r.address), _email(r.original_address))
    )
    if addr is None or not statuses:
        decision.meta[DecisionKey.BOUNCE_IGNORED] = "recipient not in the original message"
        return None
    assert isinstance(iid, int)
    return Bounce(iid, addr, statuses)


async def apply_bounces(
    conn: AsyncConnection,
    items: list[Prepared],
    bounces: list[Bounce | None],
    now: datetime,
    marked: set[tuple[str, str]] | None = None,
) -> list[str]:
    """Mark addresses that bounced, count temporary failures; the addresses whose marks a
    real mail refutes, for `clear_marks` (or the batch's PostgreSQL statement) to clear.

    Only what `vet_bounce` kept counts. A permanent failure (5.x.x) marks
    the address undeliverable and the message bounced, a temporary one
    (4.x.x) only counts; a mail the address itself sent (not machine mail)
    proves it works again and clears both. Within one batch the later of a
    bounce and a mail for the same address wins, by the contacts' own times.
    `marked`: the batch's identities known to carry a mark (None: unknown); an
    address without one and without a bounce in this batch has nothing to clear.
    """
    marks: list[dict[str, Any]] = []
    soft: list[dict[str, Any]] = []
    bounced_at: dict[str, datetime] = {}
    failed: dict[int, tuple[Prepared, list[RecipientStatus]]] = {}
    for item, bounce in zip(items, bounces, strict=True):
        if bounce is None or not (bounce.failed or bounce.delayed):
            continue
        at = item.contact.occurred_at
        bounced_at[bounce.address] = max(at, bounced_at.get(bounce.address, at))
        if bounce.failed:
            why = _reason(bounce.failed[0])
            marks.append({"addr": bounce.address, "marked_at": now, "why": why})
            failed.setdefault(bounce.interaction_id, (item, bounce.failed))
        else:
            soft.append({"addr": bounce.address})
    await execute_many(conn, _MARK_UNDELIVERABLE, marks)
    await execute_many(conn, _COUNT_SOFT_BOUNCE, soft)
    await _mark_bounced(conn, failed, now)
    clears: dict[str, None] = {}
    for item in items:
        decision = item.decision
        assert decision is not None
        if item.contact.channel is not Channel.EMAIL or decision.record_only:
            continue
        addr = item.identity.value
        bounced = bounced_at.get(addr)
        if bounced is None and decision.customer.is_new:
            continue  # its identity was inserted just now, with no mark
        if (
            bounced is None
            and marked is not None
            and (item.identity.kind.value, addr) not in marked
        ):
            continue  # no mark: the UPDATE would find nothing (~4 % of SQLite's time)
        if bounced is None or item.contact.occurred_at > bounced:
            clears[addr] = None
    return list(clears)


async def clear_marks(conn: AsyncConnection, addresses: list[str]) -> None:
    """Clear the bounce marks of these email addresses (`apply_bounces`' answer)."""
    # Nobody waits for its outcome: on SQLite it rides with the batch's next statement
    # or its commit (it ran in a round trip of its own in every batch with email).
    await defer_many(conn, _CLEAR_MARK, [{"addr": a} for a in addresses])


async def _mark_bounced(
    conn: AsyncConnection,
    failed: dict[int, tuple[Prepared, list[RecipientStatus]]],
    now: datetime,
) -> None:
    """Bounced messages' status and outbox rows; each bounce's event, published after the commit.

    Direct writes rather than hub/outbox/queue.py's status ladder: a bounce is a
    verdict that arrives after "sent" or even "delivered" (the relay accepted
    the message; the recipient's server refused it later) and must win. Two
    statements for all of the batch's bounces, however many there are.
    """
    if not failed:
        return
    changed = {
        row.id: row
        for row in await conn.execute(
            update(interaction_t)
            .where(interaction_t.c.id.in_(sorted(failed)))
            .where(
                or_(
                    interaction_t.c.delivery_status.is_(None),
                    interaction_t.c.delivery_status.not_in(sorted(_NOT_BOUNCEABLE)),
                )
            )
            .values(delivery_status=BOUNCED)
            .returning(
                interaction_t.c.id, interaction_t.c.customer_id, interaction_t.c.conversation_id
            )
        )
    }
    outbox_rows: list[dict[str, Any]] = []
    for iid in sorted(changed):
        row = changed[iid]
        item, recipients = failed[iid]
        error = "bounced: " + "; ".join(f"{r.address} {_reason(r)}" for r in recipients)
        outbox_rows.append({"iid": iid, "error": error, "now": now})
        assert item.decision is not None
        event = interaction_delivery(
            interaction_id=iid,
            customer_id=row.customer_id,
            conversation_id=row.conversation_id,
            delivery_status=BOUNCED,
            error_code=recipients[0].status,
            team_id=item.decision.customer.team_id,
        )
        item.events.append(event)
    await execute_many(conn, _FAIL_BOUNCED_OUTBOX, outbox_rows)
