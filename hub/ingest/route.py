"""Route a batch's new contacts, each through the pipeline of its own channel.

A batch mixes channels (an SMS webhook and an IMAP chunk share one commit),
so the steps run per contact, chosen by `contact.channel`; but the context
they ask is filled once for the whole batch first, whatever the channels:
routing never queries per contact.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from channels.base import Channel
from hub.ingest.context import BatchContext, Prepared
from hub.ingest.match import Matched
from hub.store.db import is_postgres
from routing.base import ConversationRef, CustomerRef, Decision, Step, run_steps

log = logging.getLogger(__name__)

Pipelines = Mapping[Channel, Sequence[Step]]


class Assigner(Protocol):
    """Who gets a new conversation (hub/calls/assign.py); None: the customer's owner."""

    # The channels whose new conversations it assigns; a batch of others (a group of
    # call events) skips `prefetch`, whose reads would then serve nothing.
    channels: frozenset[Channel]

    async def prefetch(self, conn: AsyncConnection, team_ids: Iterable[int | None]) -> None: ...

    def pick(self, channel: Channel, owner: int | None, team_id: int | None) -> int | None: ...


async def route_batch(
    ctx: BatchContext,
    fresh: list[Prepared],
    matched: Mapping[tuple[str, str], CustomerRef],
    pipelines: Pipelines,
    *,
    strict: bool,
    assigner: Assigner | None = None,
) -> list[Prepared]:
    """Decide each contact (`Prepared.decision`); returns those routed.

    A contact whose routing raises is left out (logged) so the rest of the
    batch still lands; with `strict` the error is raised instead, failing
    the whole unit (an IMAP chunk then retries message by message).
    """
    ctx.batch_customers = {ref.id for ref in matched.values()}
    # SQLite: the batch holds the write lock from the match to its commit, so the marks
    # read with the match are exactly those a clearing UPDATE would find. PostgreSQL:
    # another node may mark an identity after the match read it (the match locks the
    # customer, not the identity), so every mail's address is cleared as before.
    if isinstance(matched, Matched) and not is_postgres(ctx.conn):
        ctx.marked = matched.marked
    times = [p.contact.occurred_at for p in fresh]
    ctx.batch_span = (min(times), max(times))
    refs = {(p.contact.channel.value, r) for p in fresh for r in p.contact.thread_refs}
    await ctx.prefetch(ctx.batch_customers, refs)
    # Bounces: the messages they return, in one query for the batch.
    await ctx.prefetch_bounced(p.contact for p in fresh)
    if assigner is not None and any(p.contact.channel in assigner.channels for p in fresh):
        teams = {ref.team_id for ref in matched.values()} | {p.lead_team_id for p in fresh}
        await assigner.prefetch(ctx.conn, teams)
    new_leads: dict[tuple[str, str], CustomerRef] = {}
    routed: list[Prepared] = []
    for p in fresh:
        key = (p.identity.kind.value, p.identity.value)
        customer = matched.get(key) or new_leads.get(key)
        if customer is None:
            customer = CustomerRef(ctx.placeholder(), p.lead_team_id, None, True)
            new_leads[key] = customer
        decision = Decision(
            customer=customer, team_id=customer.team_id, assignee_id=customer.owner_id
        )
        try:
            await run_steps(pipelines[p.contact.channel], p.contact, decision, ctx)
        except Exception:
            log.exception("routing failed for contact from %r", p.contact.sender)
            if strict:
                raise
            continue
        if decision.record_only:
            # Recorded in the history only: no conversation, nobody assigned.
            decision.conversation, decision.open_conversation = None, False
            decision.assignee_id = None
        if decision.conversation is None and decision.open_conversation:
            if assigner is not None:
                decision.assignee_id = assigner.pick(
                    p.contact.channel, customer.owner_id, decision.team_id
                )
            ref = ConversationRef(ctx.placeholder(), decision.assignee_id, decision.team_id)
            decision.conversation = ref
            ctx.open_by_customer[(customer.id, p.contact.channel.value)] = ref
        p.decision = decision
        routed.append(p)
    return routed
