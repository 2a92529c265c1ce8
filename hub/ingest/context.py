"""What one ingest batch knows while it is routed: its contacts (`Prepared`), their
results, and `BatchContext`, which answers routing's questions (open conversations,
thread references, what we sent) for the whole batch from a few prefetching queries
instead of one query per contact. The batch's first reads, duplicates and the
senders' customers, are in hub/ingest/match.py.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import count
from typing import Any

from sqlalchemy import ColumnElement, Select, any_, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from channels.base import InboundContact
from hub.events.bus import Event
from hub.ingest import pg
from hub.ingest.pg import array_of
from hub.records.identity import NormalIdentity
from hub.store.db import is_postgres
from hub.store.models import ConversationStatus
from hub.store.tables import conversation_t, customer_t, interaction_t
from routing.base import ConversationRef, CustomerRef, Decision, SentMessage
from routing.mail_rules import bounce_of

ACTIVE_STATUSES = (ConversationStatus.OPEN.value, ConversationStatus.PENDING.value)


def grouped(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """(channel, provider id) or (kind, value) pairs -> values per first element, for IN lists."""
    out: dict[str, list[str]] = defaultdict(list)
    for key, value in pairs:
        out[key].append(value)
    return out


# Where an interaction's metadata keeps the answer routing gave (see Decision.reply).
REPLY_KEY = "reply"
# Most values in one IN (...) list: far below SQLite's and asyncpg's parameter limits.
IN_CHUNK = 1000


def one_of(column: Any, name: str, pg: bool) -> ColumnElement[bool]:
    """`column IN (:name...)`; on PostgreSQL `column = ANY(:name)` with an array.

    An expanding IN list is a different SQL text for every length: on asyncpg a
    new prepared statement (its cache misses, PostgreSQL plans again) for nearly
    every batch. One array parameter keeps one text and one plan.
    """
    if pg:
        return column == any_(bindparam(name, type_=array_of(column.type)))  # type: ignore[no-any-return]
    return column.in_(bindparam(name, expanding=True))  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class IngestResult:
    interaction_id: int
    customer_id: int
    conversation_id: int | None
    duplicate: bool = False
    created_customer: bool = False
    team_id: int | None = None
    reply: str | None = None


@dataclass(slots=True)
class Prepared:
    """A validated contact waiting for its batch."""

    contact: InboundContact
    identity: NormalIdentity
    lead_team_id: int
    decision: Decision | None = None
    result: IngestResult | None = None
    # Events the write produced besides "interaction.created" (a bounced
    # message's new delivery status), published after the commit. Reset by
    # every write, so a rolled-back attempt leaves none behind.
    events: list[Event] = field(default_factory=list)
    # Whether the writer announces the stored contact (interaction.created to its
    # team). A call's entry is announced by the call's own events instead, to the
    # agents the call concerns (hub/calls/advance.py).
    announce: bool = True


@dataclass
class BatchContext:
    """Answers routing's questions for one batch, including what the batch itself adds.

    Ids of rows the batch will create are negative placeholders until the
    bulk insert returns the real ones.
    """

    conn: AsyncConnection
    open_by_customer: dict[tuple[int, str], ConversationRef] = field(default_factory=dict)
    # (channel, provider id) -> (occurred_at, interaction id, its conversation) for every
    # thread reference of the batch that exists, and which references were looked up.
    by_provider_id: dict[tuple[str, str], tuple[datetime, int, int, ConversationRef]] = field(
        default_factory=dict
    )
    prefetched_refs: set[tuple[str, str]] = field(default_factory=set)
    # Set by the hub before routing: the batch's known customers and the
    # earliest and latest contact time, for prefetching what we sent them.
    batch_customers: set[int] = field(default_factory=set)
    batch_span: tuple[datetime, datetime] | None = None
    outbound: dict[
        tuple[str, timedelta], dict[int, list[tuple[datetime, int, ConversationRef]]]
    ] = field(default_factory=dict)
    # Answers of sent_message for this batch (a bounce storm repeats Message-IDs),
    # and the recipient each found message was sent to, by interaction id: a
    # bounce counts only for the address the bounced message went to.
    sent: dict[tuple[str, str], SentMessage | None] = field(default_factory=dict)
    sent_recipients: dict[int, str] = field(default_factory=dict)
    # Set by the hub before routing: the batch's identities that carry a bounce mark
    # (hub/ingest/match.py, Matched); None: not known, every mail's address is cleared
    # as if it had one.
    marked: set[tuple[str, str]] | None = None
    _placeholder: count[int] = field(default_factory=lambda: count(-1, -1))

    def placeholder(self) -> int:
        return next(self._placeholder)

    async def _prefetch_open(self, customer_ids: set[int]) -> None:
        """The customers' open conversations (SQLite; PostgreSQL reads them in `prefetch`)."""
        ids = [i for i in customer_ids if i > 0]
        if not ids:
            return
        rows = await self.conn.execute(_OPEN_OF_CUSTOMERS, {"ids": ids})
        open_by_customer = self.open_by_customer
        for conv_id, customer_id, channel, assignee_id, team_id in rows:
            # ascending, so the most recent one wins
            open_by_customer[(customer_id, channel)] = ConversationRef(
                conv_id, assignee_id, team_id
            )

    async def prefetch(self, customer_ids: set[int], refs: set[tuple[str, str]]) -> None:
        """The open conversations and `prefetch_refs`, and on PostgreSQL in the same statement
        what we sent the customers in the (channel, window)s routing asked for in earlier
        batches (`last_outbound_conversation`, which would query them now): one round
        trip instead of three. The batch has written nothing yet, so the answers are
        those the separate queries would give."""
        if not is_postgres(self.conn):
            await self._prefetch_open(customer_ids)
            if refs:
                await self.prefetch_refs(refs)
            return
        ids = sorted(i for i in customer_ids if i > 0)
        span = self.batch_span
        windows = sorted(_WINDOWS) if span is not None and ids else []
        if not (ids or refs):
            return
        row = await pg.read_batch(
            self.conn,
            ids,
            sorted(refs),
            [(channel, span[0] - window) for channel, window in windows] if span else [],
            span[1] if span else None,
        )
        for conv_id, customer_id, channel, assignee_id, team_id in row.open:
            # ascending, so the most recent one wins
            self.open_by_customer[(customer_id, channel)] = ConversationRef(
                conv_id, assignee_id, team_id
            )
        for channel, pid, at, iid, conv_id, customer_id, assignee_id, team_id in row.refs:
            self.by_provider_id[(channel, pid)] = (
                at,
                iid,
                customer_id,
                ConversationRef(conv_id, assignee_id, team_id),
            )
        self.prefetched_refs |= refs
        if windows:
            found: list[dict[int, list[tuple[datetime, int, ConversationRef]]]] = [
                defaultdict(list) for _ in windows
            ]
            for n, customer_id, at, iid, conv_id, assignee_id, team_id in row.sent:
                ref = ConversationRef(conv_id, assignee_id, team_id)
                found[n - 1][customer_id].append((at, iid, ref))
            for key, sent in zip(windows, found, strict=True):
                for entries in sent.values():
                    entries.sort(key=lambda f: (f[0], f[1]), reverse=True)
                self.outbound[key] = sent

    async def open_conversation_of(self, customer_id: int, channel: str) -> ConversationRef | None:
        return self.open_by_customer.get((customer_id, channel))

    async def prefetch_refs(self, refs: set[tuple[str, str]]) -> None:
        """Conversations behind the batch's thread references: one query, not one per reply.

        The batch writes nothing before routing ends, so what is read here is
        exactly what a query per contact during routing would see.
        """
        statement = _REFS[is_postgres(self.conn)]
        for channel, pids in grouped(refs).items():
            for i in range(0, len(pids), IN_CHUNK):
                rows = await self.conn.execute(
                    statement, {"channel": channel, "pids": pids[i : i + IN_CHUNK]}
                )
                for row in rows:
                    self.by_provider_id[(channel, row.provider_id)] = (
                        row.occurred_at,
                        row.interaction_id,
                        row.customer_id,
                        ConversationRef(row.id, row.assignee_id, row.team_id),
                    )
        self.prefetched_refs |= refs

    async def conversation_by_provider_ids(
        self, customer_id: int, channel: str, provider_ids: tuple[str, ...]
    ) -> ConversationRef | None:
        if not provider_ids or customer_id < 0:  # a lead made by this batch has no history
            return None
        keys = {(channel, pid) for pid in provider_ids}
        if not self.prefetched_refs.issuperset(keys):  # the hub prefetches; others may not
            await self.prefetch_refs(keys - self.prefetched_refs)
        # The newest referenced interaction of this customer's wins.
        found = [
            self.by_provider_id[k]
            for k in keys
            if k in self.by_provider_id and self.by_provider_id[k][2] == customer_id
        ]
        return max(found, key=lambda f: (f[0], f[1]))[3] if found else None

    async def last_outbound_conversation(
        self, customer_id: int, channel: str, since: datetime, until: datetime
    ) -> ConversationRef | None:
        if customer_id < 0:  # a lead made by this batch got nothing from us
            return None
        window = until - since
        if customer_id not in self.batch_customers:  # the hub sets them; others may not
            self.batch_customers.add(customer_id)
            self.outbound.pop((channel, window), None)
        if (channel, window) not in self.outbound:
            await self._prefetch_outbound(channel, window)
            if len(_WINDOWS) < 16:  # step settings, a handful; never grows without bound
                _WINDOWS.add((channel, window))
        # Newest first: the first one inside this contact's window wins.
        for at, _iid, ref in self.outbound[(channel, window)].get(customer_id, ()):
            if since <= at <= until:
                return ref
        return None

    async def prefetch_sent(self, keys: set[tuple[str, str]]) -> None:
        """The messages we sent behind these (channel, Message-ID) keys: one query per
        channel and IN_CHUNK ids, however many bounces of a storm name them."""
        statement = _SENT[is_postgres(self.conn)]
        for channel, pids in grouped(sorted(keys - set(self.sent))).items():
            for i in range(0, len(pids), IN_CHUNK):
                chunk = pids[i : i + IN_CHUNK]
                found: dict[str, SentMessage] = {}
                for row in await self.conn.execute(statement, {"channel": channel, "pids": chunk}):
                    # One message per Message-ID; should an id repeat, the first wins.
                    if row.provider_id not in found:
                        found[row.provider_id] = self._remember_sent(row)
                for pid in chunk:
                    self.sent[(channel, pid)] = found.get(pid)

    async def prefetch_bounced(self, contacts: Iterable[InboundContact]) -> None:
        """Prefetch what the batch's bounces will ask `sent_message`: a storm of
        DSNs costs one query, not one per report. Reads only bounces' metadata."""
        keys: set[tuple[str, str]] = set()
        for contact in contacts:
            bounce = bounce_of(contact)
            if bounce is not None and bounce.original_message_id is not None:
                keys.add((contact.channel.value, bounce.original_message_id))
        if keys:
            await self.prefetch_sent(keys)

    async def sent_message(self, channel: str, provider_id: str) -> SentMessage | None:
        """From the batch's answers (prefetch_sent), else one query for this id."""
        key = (channel, provider_id)
        if key not in self.sent:
            await self.prefetch_sent({key})
        return self.sent[key]

    def _remember_sent(self, row: Any) -> SentMessage:
        conversation = None
        if row.conversation_id is not None:
            conversation = ConversationRef(
                row.conversation_id, row.assignee_id, row.conversation_team_id
            )
        self.sent_recipients[row.id] = row.recipient or ""
        return SentMessage(
            row.id, CustomerRef(row.customer_id, row.team_id, row.owner_id, False), conversation
        )

    async def conversation_of_customer(
        self, customer_id: int, conversation_id: int, channel: str
    ) -> ConversationRef | None:
        """One query per reply whose references found nothing but that carries a token."""
        if customer_id < 0 or conversation_id < 1:  # a lead made by this batch has none
            return None
        row = (
            await self.conn.execute(
                select(conversation_t.c.id, conversation_t.c.assignee_id, conversation_t.c.team_id)
                .where(conversation_t.c.id == conversation_id)
                .where(conversation_t.c.customer_id == customer_id)
                .where(conversation_t.c.channel == channel)
            )
        ).first()
        return None if row is None else ConversationRef(row.id, row.assignee_id, row.team_id)

    async def _prefetch_outbound(self, channel: str, window: timedelta) -> None:
        """What we sent the batch's customers on `channel` within reach of any of its contacts.

        One query per batch instead of one per contact without an open
        conversation (most contacts of a large customer base): that per-contact
        query halved ingest throughput at a million customers.
        """
        found: dict[int, list[tuple[datetime, int, ConversationRef]]] = defaultdict(list)
        ids = sorted(self.batch_customers)
        # Without a span: all we ever sent them.
        statement = _outbound_statement(is_postgres(self.conn), self.batch_span is not None)
        params: dict[str, Any] = {"channel": channel}
        if self.batch_span is not None:
            earliest, latest = self.batch_span
            params["since"], params["until"] = earliest - window, latest
        for i in range(0, len(ids), IN_CHUNK):
            params["ids"] = ids[i : i + IN_CHUNK]
            rows = await self.conn.execute(statement, params)
            for row in rows:
                ref = ConversationRef(row.id, row.assignee_id, row.team_id)
                found[row.customer_id].append((row.occurred_at, row.interaction_id, ref))
        for sent in found.values():
            sent.sort(key=lambda f: (f[0], f[1]), reverse=True)
        self.outbound[(channel, window)] = found


def _sent_query(pg: bool) -> Select[Any]:
    """Our outbound interactions with the provider ids `pids` on `channel`, with their
    customers and recipients."""
    return (
        select(
            interaction_t.c.id,
            interaction_t.c.provider_id,
            interaction_t.c.recipient,
            interaction_t.c.conversation_id,
            customer_t.c.id.label("customer_id"),
            customer_t.c.team_id,
            customer_t.c.owner_id,
            conversation_t.c.assignee_id,
            conversation_t.c.team_id.label("conversation_team_id"),
        )
        .join(customer_t, customer_t.c.id == interaction_t.c.customer_id)
        .outerjoin(conversation_t, conversation_t.c.id == interaction_t.c.conversation_id)
        .where(interaction_t.c.channel == bindparam("channel"))
        .where(one_of(interaction_t.c.provider_id, "pids", pg))
        .where(interaction_t.c.direction == "out")
        # Held like the customers match_customers found, so a merge waits for
        # this batch and then moves the bounce along.
        .with_for_update(key_share=True, of=customer_t)
        .order_by(customer_t.c.id, interaction_t.c.id)
    )


# Statements built once, per backend (True: PostgreSQL), for the same reason as below.
_SENT = {pg: _sent_query(pg) for pg in (False, True)}
_REFS = {
    pg: select(
        interaction_t.c.provider_id,
        interaction_t.c.occurred_at,
        interaction_t.c.id.label("interaction_id"),
        conversation_t.c.id,
        conversation_t.c.customer_id,
        conversation_t.c.assignee_id,
        conversation_t.c.team_id,
    )
    .join(conversation_t, interaction_t.c.conversation_id == conversation_t.c.id)
    .where(interaction_t.c.channel == bindparam("channel"))
    .where(one_of(interaction_t.c.provider_id, "pids", pg))
    for pg in (False, True)
}
_OUTBOUND: dict[tuple[bool, bool], Select[Any]] = {}
# (channel, window)s `last_outbound_conversation` asked for: the routing steps' settings,
# the same in every batch, so `BatchContext.prefetch` reads them with the batch's others.
_WINDOWS: set[tuple[str, timedelta]] = set()


def _outbound_statement(pg: bool, spanned: bool) -> Select[Any]:
    """What we sent customers `ids` on `channel`; `spanned`: only between `since` and `until`."""
    if (pg, spanned) not in _OUTBOUND:
        query = (
            select(
                interaction_t.c.customer_id,
                interaction_t.c.occurred_at,
                interaction_t.c.id.label("interaction_id"),
                conversation_t.c.id,
                conversation_t.c.assignee_id,
                conversation_t.c.team_id,
            )
            .join(conversation_t, interaction_t.c.conversation_id == conversation_t.c.id)
            .where(one_of(interaction_t.c.customer_id, "ids", pg))
            .where(interaction_t.c.channel == bindparam("channel"))
            .where(interaction_t.c.direction == "out")
        )
        if spanned:
            query = query.where(interaction_t.c.occurred_at >= bindparam("since")).where(
                interaction_t.c.occurred_at <= bindparam("until")
            )
        _OUTBOUND[(pg, spanned)] = query
    return _OUTBOUND[(pg, spanned)]


# Built once (the IN list is an expanding bind): building a statement per batch, and
# its cache key, was a visible part of the writer's time. SQLite only: PostgreSQL
# reads the open conversations in hub/ingest/pg.py's read_batch.
_OPEN_OF_CUSTOMERS = (
    select(
        conversation_t.c.id,
        conversation_t.c.customer_id,
        conversation_t.c.channel,
        conversation_t.c.assignee_id,
        conversation_t.c.team_id,
    )
    .where(conversation_t.c.customer_id.in_(bindparam("ids", expanding=True)))
    .where(conversation_t.c.status.in_(ACTIVE_STATUSES))
    .order_by(conversation_t.c.last_activity_at, conversation_t.c.id)
)
