"""PostgreSQL's batch statements (hub/ingest/pg.py) store and find what the portable ones do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from channels.base import AttachmentRef, Channel, InboundContact
from hub.ingest import batch, context, match
from hub.ingest.pipeline import IngestError
from hub.runtime import Hub
from hub.store.db import Database
from hub.store.models import Conversation, Interaction
from hub.store.tables import (
    attachment_t,
    consent_t,
    conversation_t,
    customer_t,
    identity_t,
    interaction_t,
)
from tests.support.imports import add_customer

pytestmark = pytest.mark.db

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
TABLES = (customer_t, identity_t, conversation_t, interaction_t, attachment_t, consent_t)
# Foreign keys: the table whose new ids they may name.
REFS = {
    "customer_id": "customer",
    "conversation_id": "conversation",
    "interaction_id": "interaction",
}


@pytest.fixture(autouse=True)
def _postgres_only(db: Database) -> None:
    if db.sqlite:
        pytest.skip("PostgreSQL statements")


def _contacts() -> list[InboundContact]:
    def at(minutes: int) -> datetime:
        return T0 + timedelta(minutes=minutes)

    return [
        # a known customer with an open SMS conversation (touched), twice, out of order
        InboundContact(
            Channel.SMS, "+49 171 5550001", text="b", provider_id="S2", occurred_at=at(5)
        ),
        InboundContact(
            Channel.SMS, "+49 171 5550001", text="a", provider_id="S1", occurred_at=at(1)
        ),
        # a known customer whose address bounced: the mail clears the mark
        InboundContact(
            Channel.EMAIL,
            "bob@example.org",
            subject="Hi",
            text="x",
            provider_id="<e1@x>",
            occurred_at=at(2),
            metadata={"message_id": "<e1@x>", "n": [1, {"k": None}]},
        ),
        # one new sender twice (one lead, one conversation), with an attachment
        InboundContact(
            Channel.EMAIL,
            "New Person <NEW@Example.org>",
            subject="Q",
            text="q1",
            provider_id="<n1@x>",
            occurred_at=at(3),
            attachments=(AttachmentRef("a.pdf", "application/pdf", 12, "ab" * 32, "u1"),),
        ),
        InboundContact(
            Channel.EMAIL,
            "new@example.org",
            subject="Q",
            text="q2",
            provider_id="<n2@x>",
            occurred_at=at(4),
        ),
        # a new SMS sender, and a STOP from the known one (a consent row)
        InboundContact(
            Channel.SMS, "+49 171 5550002", text="hello", provider_id="S3", occurred_at=at(6)
        ),
        InboundContact(
            Channel.SMS, "+49 171 5550001", text="STOP", provider_id="S4", occurred_at=at(7)
        ),
        # no provider id, a text with quotes and a NUL-free unicode body
        InboundContact(
            Channel.SMS, "+49 171 5550002", text="'\"ü", provider_id=None, occurred_at=at(0)
        ),
    ]


async def _snapshot(
    conn: Any, before: dict[str, int]
) -> tuple[dict[str, list[tuple[Any, ...]]], Any]:
    """Every row of the tables, new ids as ("new", n) in their order, so that two runs
    (whose sequences differ: a rollback does not give ids back) compare equal."""
    raw = {
        t.name: [r._asdict() for r in await conn.execute(select(t).order_by(t.c.id))]
        for t in TABLES
    }
    first = {
        name: min((r["id"] for r in rows if r["id"] > before[name]), default=0)
        for name, rows in raw.items()
    }

    def norm(table: str, value: Any) -> Any:
        if isinstance(value, int) and value > before[table]:
            return ("new", value - first[table])
        return value

    out: dict[str, list[tuple[Any, ...]]] = {}
    for name, rows in raw.items():
        out[name] = [
            tuple(
                norm(name, v) if k == "id" else norm(REFS[k], v) if k in REFS else v
                for k, v in row.items()
            )
            for row in rows
        ]
    return out, norm


async def _run(hub: Hub, pg: bool, before: dict[str, int], monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(batch, "is_postgres", lambda _conn: pg)
    monkeypatch.setattr(batch, "utcnow", lambda: NOW)
    items = [hub.ingestor.prepare(c) for c in _contacts()]
    async with hub.db.write_engine.connect() as conn:
        transaction = await conn.begin()
        await hub.ingestor._write(conn, items, strict=False)
        snapshot, norm = await _snapshot(conn, before)
        await transaction.rollback()
    results = []
    for item in items:
        r = item.result
        assert r is not None
        results.append(
            (
                norm("interaction", r.interaction_id),
                norm("customer", r.customer_id),
                norm("conversation", r.conversation_id),
                r.duplicate,
                r.created_customer,
                r.team_id,
                r.reply,
            )
        )
    return snapshot, results


async def test_batch_written_in_one_statement_equals_the_portable_writes(
    hub: Hub, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Leads (two contacts of one), identities, new and existing conversations, history
    with JSON meta and attachments, a consent, last-contact times moved forward only
    (not back by an older contact), and a bounce mark cleared: row for row the same."""
    known = await add_customer(db, ("phone", "+491715550001"), name="Known")
    await add_customer(db, ("email", "bob@example.org"), name="Bob")
    async with db.write() as s:
        s.add(Conversation(customer_id=known, channel="sms", status="pending", last_activity_at=T0))
        conn = await s.connection()
        await conn.execute(
            update(identity_t)
            .where(identity_t.c.value == "bob@example.org")
            .values(undeliverable_at=T0, undeliverable_reason="5.1.1 gone", soft_bounces=2)
        )
        await conn.execute(
            update(customer_t)
            .where(customer_t.c.id == known)
            .values(last_inbound_at=T0 + timedelta(minutes=3))
        )
    async with db.read() as s:
        conn = await s.connection()
        before = {
            t.name: (await conn.execute(select(func.coalesce(func.max(t.c.id), 0)))).scalar_one()
            for t in TABLES
        }
    portable = await _run(hub, False, before, monkeypatch)
    combined = await _run(hub, True, before, monkeypatch)
    assert combined == portable
    snapshot = combined[0]
    assert len(snapshot["customer"]) == 4 and len(snapshot["conversation"]) == 4
    assert len(snapshot["interaction"]) == 8 and len(snapshot["attachment"]) == 1
    assert len(snapshot["consent"]) == 1
    cols = [c.name for c in identity_t.c]
    bob_identity = next(
        dict(zip(cols, r, strict=True)) for r in snapshot["identity"] if r[3] == "bob@example.org"
    )
    assert (bob_identity["undeliverable_at"], bob_identity["soft_bounces"]) == (None, 0)
    known_row = dict(zip([c.name for c in customer_t.c], snapshot["customer"][0], strict=True))
    assert known_row["last_inbound_at"] == T0 + timedelta(minutes=7)


async def test_replies_thread_by_what_we_sent_when_prefetched_with_the_batch(
    hub: Hub, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An SMS without an open conversation joins the one of our last SMS in the reply
    window: asked lazily in the first batch, then read with the batch's other reads
    (BatchContext.prefetch) in the next; the same answer both ways, never an SMS of ours
    outside the window or to someone else."""
    monkeypatch.setattr(context, "_WINDOWS", set())
    lazy: list[object] = []
    original = context.BatchContext._prefetch_outbound

    async def counted(self: context.BatchContext, *args: Any) -> None:
        lazy.append(args)
        await original(self, *args)

    monkeypatch.setattr(context.BatchContext, "_prefetch_outbound", counted)
    now = datetime.now(UTC)
    people = []
    for n in (1, 2):
        cid = await add_customer(db, ("phone", f"+4917155501{n:02d}"), name=f"P{n}")
        async with db.write() as s:
            recent = Conversation(customer_id=cid, channel="sms", status="closed")
            old = Conversation(customer_id=cid, channel="sms", status="closed")
            s.add_all([recent, old])
            await s.flush()
            for conv, ago in ((recent, timedelta(hours=1)), (old, timedelta(days=30))):
                s.add(
                    Interaction(
                        customer_id=cid,
                        conversation_id=conv.id,
                        channel="sms",
                        direction="out",
                        occurred_at=now - ago,
                        text="from us",
                    )
                )
        people.append((cid, recent.id))
    for n, (cid, conversation) in enumerate(people, start=1):
        r = await hub.ingestor.ingest(
            InboundContact(
                Channel.SMS,
                f"+4917155501{n:02d}",
                text="yes",
                provider_id=f"R{n}",
                occurred_at=now,
            )
        )
        assert (r.customer_id, r.conversation_id) == (cid, conversation)
    # Asked lazily in the first batch only; the second had it prefetched.
    assert len(lazy) == 1
    assert sorted(context._WINDOWS) == [("sms", timedelta(hours=72))]


async def test_array_parameters_never_cut_a_value_to_the_columns_length(
    hub: Hub, db: Database
) -> None:
    """A value longer than its column (identity.value: 320) is compared whole: cut to fit
    (a cast to varchar(320)[]) it matched the identity that is its first 320 characters.
    Stored, it is refused as before instead of being stored cut."""
    stored = "a" * 308 + "@example.org"
    assert len(stored) == 320
    cid = await add_customer(db, ("email", stored), name="Long")
    async with db.write() as s:
        conn = await s.connection()
        assert await match.match_customers(conn, {("email", stored + "x")}) == {}
        found = await match.match_customers(conn, {("email", stored)})
    assert {key: ref.id for key, ref in found.items()} == {("email", stored): cid}
    with pytest.raises(IngestError):
        await hub.ingestor.ingest(
            InboundContact(Channel.EMAIL, "b" * 400 + "@example.org", provider_id="<long@x>")
        )
