"""The inbound pipeline with group commit.

Callers (webhooks, IMAP pollers, tests) `await ingest(contact)`; a single
writer task takes everything that queued up while the previous commit ran,
processes it as one batch in one transaction, and answers each caller only
after that commit. One commit for many contacts is what lets durability
(fsync per commit) keep up with throughput.

If the batch's transaction fails (a constraint raced by another node, a bad
value the database refuses) it is rolled back and every contact in it is
retried alone, so one bad contact fails alone and the rest still land.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from channels.base import InboundContact
from hub.events.bus import EventBus
from hub.ingest.announce import announce
from hub.ingest.batch import write_batch
from hub.ingest.context import BatchContext, IngestResult, Prepared
from hub.ingest.match import find_existing, match_customers
from hub.ingest.route import Assigner, Pipelines, route_batch
from hub.records.identity import InvalidIdentity, normalize_address
from hub.records.teams import TeamRouter
from hub.store.db import Database, is_outage, is_transient

log = logging.getLogger(__name__)

MAX_PROVIDER_ID = 500
# Tries of a transaction PostgreSQL aborted for a deadlock or serialization failure.
TRANSIENT_TRIES = 3
# Tries of a batch that met a unique key another node committed meanwhile (PostgreSQL).
RACED_TRIES = 3
MAX_TEXT = 1_000_000
# Event-loop turns a lone riding write waits for contacts to ride with (see _run).
RIDE_TURNS = 4
# Event-loop turns a batch waits for more contacts, unless this many are queued (see _run).
GATHER_TURNS = 8
GATHER_TARGET = 56


class IngestError(ValueError):
    """This contact cannot be stored; the message says why (for a 4xx answer)."""


class IngestUnavailable(RuntimeError):
    """The database is unavailable; nothing was stored. Retry later (503, no IMAP ack)."""


@dataclass(slots=True)
class _Job:
    prepared: Prepared
    future: asyncio.Future[IngestResult]


# Writes that must commit in the same transaction as a unit's contacts (an
# IMAP checkpoint, quarantine rows); called after the contacts are written,
# so it can read each Prepared.result.
UnitWrite = Callable[[AsyncConnection, list[Prepared]], Awaitable[None]]


class _Stop:
    """Queued by `Ingestor.stop`: the writer ends when it takes this."""


@dataclass(slots=True)
class _Unit:
    """Contacts stored all together or not at all, with `extra` in the same transaction."""

    items: list[Prepared]
    extra: UnitWrite
    future: asyncio.Future[list[IngestResult]]
    # A write of the node's own (write_through, e.g. the event log): may ride in the
    # transaction of contacts taken with it instead of costing a commit of its own.
    may_ride: bool = False


class Ingestor:
    def __init__(
        self,
        db: Database,
        bus: EventBus,
        pipelines: Pipelines,
        teams: TeamRouter,
        *,
        region: str,
        batch_max: int = 512,
        max_queue: int = 20_000,
    ) -> None:
        self.db = db
        self.bus = bus
        # One ordered step list per channel (routing.pipelines); a batch mixes
        # channels, so each contact runs its own channel's list.
        self.pipelines = {channel: list(steps) for channel, steps in pipelines.items()}
        self.teams = teams
        self.region = region
        self.batch_max = batch_max
        self.max_queue = max_queue
        self._queue: asyncio.Queue[_Job | _Unit | _Stop] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self.batches = 0  # for /metrics-style introspection and tests
        # Recipient address as received -> team of a new lead. Parsing a phone
        # number costs ~25 us and there are only a few inbound addresses; the
        # TeamRouter does not change while the hub runs.
        self._team_of_recipient: dict[str, int] = {}
        # Who gets a new conversation (the hub sets it); None: the customer's owner.
        self.assigner: Assigner | None = None

    async def start(self) -> None:
        if self._writer is None:
            self._writer = asyncio.create_task(self._run(), name="ingest-writer")

    async def stop(self) -> None:
        """Finish what is queued, then stop the writer."""
        if self._writer is None:
            return
        # New work is refused from here (RuntimeError; the event log then writes alone).
        # What was queued before is stored, then the writer ends at the marker: not
        # cancelled, which left work queued in between waiting forever (the event
        # store's last write did, and Hub.stop with it).
        writer, self._writer = self._writer, None
        self._queue.put_nowait(_Stop())
        await writer

    async def ingest(self, contact: InboundContact) -> IngestResult:
        """Store one contact; returns after its commit. Raises IngestError for bad input."""
        if self._writer is None:
            raise RuntimeError("Ingestor.start() was not called")
        # Validated and normalised here, in the caller's task, not by the writer:
        # this Python work then overlaps the previous batch's commit (which
        # runs in the database driver's thread) instead of delaying the next.
        if self._queue.qsize() >= self.max_queue:
            # Refused before any work: nothing is stored, and the sender retries.
            raise IngestUnavailable(f"ingest queue full ({self.max_queue} waiting); retry")
        prepared = self.prepare(contact)
        future: asyncio.Future[IngestResult] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(prepared, future))
        # shield: a caller that goes away (client disconnect) must not cancel
        # the shared future the writer will still resolve.
        return await asyncio.shield(future)

    async def ingest_unit(self, items: list[Prepared], extra: UnitWrite) -> list[IngestResult]:
        """Store `items` (from `prepare`) and run `extra` in one transaction: all or nothing.

        For sources that must record how far they got together with what they
        got (an IMAP checkpoint). Raises IngestUnavailable when the database is
        away, IngestError when any item cannot be stored or routed (nothing of
        the unit is stored then; the caller may retry item by item).
        """
        return await self._queue_unit(_Unit(list(items), extra, self._future()))

    def _future(self) -> asyncio.Future[list[IngestResult]]:
        if self._writer is None:
            raise RuntimeError("Ingestor.start() was not called")
        return asyncio.get_running_loop().create_future()

    async def _queue_unit(self, unit: _Unit) -> list[IngestResult]:
        self._queue.put_nowait(unit)
        return await asyncio.shield(unit.future)

    async def write_through(self, write: Callable[[AsyncConnection], Awaitable[None]]) -> None:
        """Run `write` in a transaction of this writer, after what is queued (for other
        writes of the node, e.g. the event log's, that would contend for SQLite's lock).

        It rides in the transaction of the contacts taken with it when there are
        any (one commit instead of two; should that transaction fail, the
        contacts are stored without it and it runs alone)."""

        async def extra(conn: AsyncConnection, _items: list[Prepared]) -> None:
            await write(conn)

        await self._queue_unit(_Unit([], extra, self._future(), may_ride=True))

    async def _run(self) -> None:
        while True:
            taken = [await self._queue.get()]
            if isinstance(taken[0], _Unit) and taken[0].may_ride and self._queue.empty():
                # Alone: the callers the last commit released are about to queue their
                # next contacts (a few loop turns away); ride with them.
                for _ in range(RIDE_TURNS):
                    await asyncio.sleep(0)
            elif isinstance(taken[0], _Job):
                # Requests being parsed right now queue within a few loop turns: taking
                # them too spreads a batch's fixed cost (statements, COMMIT, fsync) over
                # more contacts. Under webhook load batches grew from ~32 to ~58 and the
                # node's CPU per webhook fell ~10 %; when nothing else arrives it is a
                # few microseconds.
                for _ in range(GATHER_TURNS):
                    if self._queue.qsize() + 1 >= min(GATHER_TARGET, self.batch_max):
                        break
                    await asyncio.sleep(0)
            while (
                len(taken) < self.batch_max
                and not self._queue.empty()
                and not isinstance(taken[-1], _Stop)
            ):
                taken.append(self._queue.get_nowait())
            stopping = isinstance(taken[-1], _Stop)
            if stopping:
                self._queue.task_done()
            got = [j for j in taken if not isinstance(j, _Stop)]
            jobs = [j for j in got if isinstance(j, _Job)]
            riders = [u for u in got if isinstance(u, _Unit) and u.may_ride] if jobs else []
            try:
                rode = await self._process(jobs, riders) if jobs else False
                for unit in got:
                    if isinstance(unit, _Unit) and not (rode and unit.may_ride):
                        await self._process_unit(unit)
            except Exception as exc:  # never let the writer die; fail the batch instead
                log.exception("ingest batch failed unexpectedly")
                for job in got:
                    if not job.future.done():
                        job.future.set_exception(exc)
            finally:
                for _ in got:
                    self._queue.task_done()
            if stopping:
                return

    async def _process_unit(self, unit: _Unit) -> None:
        self.batches += 1
        for p in unit.items:
            p.result = p.decision = None
        try:
            await self._store(unit.items, extra=unit.extra, strict=True)
        except Exception as exc:
            if is_outage(exc) or is_transient(exc):
                log.warning("ingest unit of %d not stored: %s", len(unit.items), exc)
                unit.future.set_exception(IngestUnavailable("database unavailable; retry"))
            else:
                unit.future.set_exception(IngestError(f"{type(exc).__name__}: {exc}"[:500]))
            return
        results = [p.result for p in unit.items]
        unit.future.set_result([r for r in results if r is not None])
        for p in unit.items:
            if p.result is not None and not p.result.duplicate and p.announce:
                self._publish(p)

    def prepare(self, contact: InboundContact) -> Prepared:
        """Validate and normalise a contact (IngestError when it cannot be stored)."""
        if contact.provider_id is not None and not (
            0 < len(contact.provider_id) <= MAX_PROVIDER_ID
        ):
            raise IngestError(f"provider id must be 1 to {MAX_PROVIDER_ID} characters")
        if "\x00" in contact.sender or "\x00" in (contact.provider_id or ""):
            raise IngestError("sender and provider id must not contain NUL characters")
        if not _plain_json(contact.metadata):
            try:  # what is not plainly JSON may still encode (a tuple, an int key)
                json.dumps(contact.metadata)
            except (TypeError, ValueError) as exc:
                raise IngestError(f"metadata is not JSON: {exc}") from exc
        if any("\x00" in t for t in (contact.text, contact.subject, contact.sender_name)):
            # PostgreSQL text cannot hold NUL; a stray one must not lose the message.
            contact = dataclasses.replace(
                contact,
                text=contact.text.replace("\x00", "\ufffd"),
                subject=contact.subject.replace("\x00", "\ufffd"),
                sender_name=contact.sender_name.replace("\x00", "\ufffd"),
            )
        if len(contact.text) > MAX_TEXT:
            raise IngestError(f"text longer than {MAX_TEXT} characters")
        if contact.occurred_at.tzinfo is None:
            raise IngestError("occurred_at must carry a time zone")
        if contact.channel not in self.pipelines:
            raise IngestError(f"no routing pipeline for channel {contact.channel.value!r}")
        try:
            identity = normalize_address(contact.sender, self.region)
        except InvalidIdentity as exc:
            raise IngestError(f"sender: {exc}") from exc
        return Prepared(contact, identity, self._lead_team(contact.recipient))

    def _lead_team(self, recipient: str) -> int:
        team = self._team_of_recipient.get(recipient)
        if team is None:
            team = self.teams.team_for_recipient(recipient)
            if len(self._team_of_recipient) >= 10_000:  # odd senders must not grow it forever
                self._team_of_recipient.clear()
            self._team_of_recipient[recipient] = team
        return team

    async def _process(self, jobs: list[_Job], riders: list[_Unit]) -> bool:
        """Store the jobs' contacts; whether `riders` were written (and answered) with them."""
        self.batches += 1
        # Same (channel, provider id) twice in one batch: one leader stores it,
        # the followers get the leader's answer.
        leaders: dict[tuple[str, str] | int, tuple[Prepared, list[_Job]]] = {}
        for job in jobs:
            prepared = job.prepared
            pid = prepared.contact.provider_id
            key: tuple[str, str] | int = (prepared.contact.channel.value, pid) if pid else id(job)
            if key in leaders:
                leaders[key][1].append(job)
            else:
                leaders[key] = (prepared, [job])
        groups = list(leaders.values())
        rode = False
        failures: dict[int, Exception] = {}
        try:
            rode = await self._store_with_riders([p for p, _ in groups], riders)
        except Exception as exc:
            if is_outage(exc):
                # The database itself is away or locked: nothing of the batch is stored.
                log.warning("ingest batch of %d not stored: %s", len(groups), exc)
                for prepared, _ in groups:
                    prepared.result = None
                    failures[id(prepared)] = IngestUnavailable("database unavailable; retry")
            else:
                # Anything else may be one contact's fault: retry each alone so only it fails.
                log.info("batch of %d failed; retrying its contacts one by one", len(groups))
                for prepared, _ in groups:
                    prepared.result = prepared.decision = None
                    failure = await self._store_alone(prepared)
                    if failure is not None:
                        failures[id(prepared)] = failure
        for prepared, group_jobs in groups:
            result = prepared.result
            for i, job in enumerate(group_jobs):
                if result is None:
                    job.future.set_exception(
                        failures.get(id(prepared)) or IngestError("could not be routed")
                    )
                elif i == 0:
                    job.future.set_result(result)
                else:
                    job.future.set_result(_as_duplicate(result))
        if rode:
            for unit in riders:
                unit.future.set_result([])
        for prepared, _ in groups:
            if prepared.result is not None and not prepared.result.duplicate and prepared.announce:
                self._publish(prepared)
        return rode

    async def _store_with_riders(self, items: list[Prepared], riders: list[_Unit]) -> bool:
        """`_store_batch` with the riders' writes in the same transaction; without them
        when that fails (they then run alone, and cannot fail the contacts)."""
        if riders:

            async def ride(conn: AsyncConnection, stored: list[Prepared]) -> None:
                for unit in riders:
                    await unit.extra(conn, [])

            try:
                await self._store_batch(items, ride)
                return True
            except Exception as exc:
                if is_outage(exc) or is_transient(exc):
                    # Not the riders' fault: a second try would only make the callers
                    # wait out another lock timeout (past Twilio's 15 s) for the same answer.
                    raise
                log.info("ingest batch with %d riding writes failed; again without", len(riders))
                for p in items:
                    p.result = p.decision = None
        await self._store_batch(items)
        return False

    async def _store_batch(self, items: list[Prepared], extra: UnitWrite | None = None) -> None:
        """`_store`, again when PostgreSQL aborted it for a deadlock with another node's
        batch (the other one committed meanwhile) or when another node committed a key
        of it first (a provider's retry sent to both nodes), up to TRANSIENT_TRIES and
        RACED_TRIES tries; then the caller splits it up."""
        deadlocks = raced = 0
        while True:
            try:
                await self._store(items, extra=extra)
                return
            except IntegrityError:
                # The other node's row is committed now, so the next try finds it and
                # answers that contact as a duplicate. Split up, the whole batch paid a
                # transaction per contact, the p99 of both nodes under wrk. A few times
                # only (the next try may meet another raced key): a contact that is
                # itself refused then fails alone. SQLite has one writer: never a race.
                raced += 1
                if self.db.sqlite or raced == RACED_TRIES:
                    raise
                log.info("ingest batch of %d met a key another node stored; again", len(items))
            except Exception as exc:
                deadlocks += 1
                if not is_transient(exc) or deadlocks == TRANSIENT_TRIES:
                    raise
                log.info("ingest batch of %d aborted by a deadlock; again", len(items))
            for p in items:
                p.result = p.decision = None

    async def _store_alone(self, prepared: Prepared) -> Exception | None:
        """Store one contact in its own transaction; the reason when it cannot be."""
        # Twice: a unique key raced by another node is visible on the second try.
        # A deadlock or serialization failure is no fault of the contact: tried
        # again, and at worst answered "unavailable" (retry), never "refused".
        raced = conflicts = 0
        while True:
            try:
                await self._store([prepared])
                return None
            except IntegrityError:
                prepared.result = prepared.decision = None
                raced += 1
                if raced == 2:
                    log.exception("contact from %r failed twice", prepared.contact.sender)
                    return IngestError("conflicts with data stored at the same time")
            except Exception as exc:
                prepared.result = prepared.decision = None
                if is_transient(exc):
                    conflicts += 1
                    if conflicts < TRANSIENT_TRIES:
                        continue
                    log.warning("contact from %r not stored: %s", prepared.contact.sender, exc)
                    return IngestUnavailable("conflicting writes; retry")
                if is_outage(exc):
                    log.warning("contact from %r not stored: %s", prepared.contact.sender, exc)
                    return IngestUnavailable("database unavailable; retry")
                log.exception("contact from %r refused", prepared.contact.sender)
                return IngestError(f"refused by the database: {type(exc).__name__}")

    async def _store(
        self, items: list[Prepared], *, extra: UnitWrite | None = None, strict: bool = False
    ) -> None:
        """Write `items` in one transaction; `strict`: a routing failure fails them all."""
        async with self.db.write_engine.begin() as conn:
            await self._write(conn, items, strict)
            if extra is not None:
                await extra(conn, items)

    async def _write(self, conn: AsyncConnection, items: list[Prepared], strict: bool) -> None:
        ctx = BatchContext(conn)
        keys = {
            (p.contact.channel.value, p.contact.provider_id) for p in items if p.contact.provider_id
        }
        existing = await find_existing(conn, keys) if keys else {}
        fresh: list[Prepared] = []
        for p in items:
            dup = existing.get((p.contact.channel.value, p.contact.provider_id or ""))
            if dup is not None:
                p.result = dup
            else:
                fresh.append(p)
        if not fresh:
            return
        matched = await match_customers(
            conn, {(p.identity.kind.value, p.identity.value) for p in fresh}
        )
        routed = await route_batch(
            ctx, fresh, matched, self.pipelines, strict=strict, assigner=self.assigner
        )
        if routed:
            await write_batch(conn, routed, ctx)

    def _publish(self, prepared: Prepared) -> None:
        announce(self.bus, prepared)


def _plain_json(value: object, depth: int = 0) -> bool:
    """Whether `value` is made of dicts with str keys, lists, str, int, float, bool and
    None only: then json.dumps cannot fail on it, and `prepare` need not encode it
    just to find out (the JSON column encodes it again when it is stored)."""
    t = type(value)
    if t is str or t is int or t is float or t is bool or value is None:
        return True
    if depth >= 32:  # deep (or circular): let json.dumps judge
        return False
    if t is dict:
        return all(
            type(k) is str and _plain_json(v, depth + 1)
            for k, v in value.items()  # type: ignore[attr-defined]
        )
    if t is list:
        return all(_plain_json(v, depth + 1) for v in value)  # type: ignore[attr-defined]
    return False


def _as_duplicate(result: IngestResult) -> IngestResult:
    return dataclasses.replace(result, duplicate=True, created_customer=False)
