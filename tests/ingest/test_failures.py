"""How ingest fails: one bad contact alone, a database outage as retryable, NUL text kept."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from channels.base import Channel, InboundContact
from hub.config import DatabaseConfig, Settings
from hub.events.bus import EventBus
from hub.ingest.pipeline import IngestError, Ingestor, IngestUnavailable
from hub.records.teams import TeamRouter
from hub.runtime import Hub
from hub.store.db import Database
from hub.store.models import Interaction
from routing.base import Decision, RoutingContext
from routing.threading import ThreadConversation
from tests.support.hubs import hub_with_step


def sms(sender: str, sid: str, text: str = "hi", **kw: object) -> InboundContact:
    return InboundContact(Channel.SMS, sender, text=text, provider_id=sid, **kw)  # type: ignore[arg-type]


async def stored(db: Database) -> list[str | None]:
    async with db.read() as s:
        return sorted((await s.exec(select(Interaction.provider_id))).scalars())  # type: ignore[call-overload]


async def test_metadata_that_is_not_json_fails_only_its_contact(hub: Hub, db: Database) -> None:
    contacts = [sms(f"+4917155580{i:02d}", f"SMm{i}") for i in range(3)]
    contacts.insert(1, sms("+4917155589999", "SMbad", metadata={"at": datetime.now(UTC)}))
    results = await asyncio.gather(
        *[hub.ingestor.ingest(c) for c in contacts], return_exceptions=True
    )
    assert [type(r).__name__ for r in results] == [
        "IngestResult",
        "IngestError",
        "IngestResult",
        "IngestResult",
    ]
    assert str(results[1]).startswith("metadata is not JSON: Object of type datetime")
    assert await stored(db) == ["SMm0", "SMm1", "SMm2"]


async def test_a_routing_step_writing_bad_metadata_fails_only_its_contact(
    settings: Settings, db: Database
) -> None:
    class Annotate:
        name = "annotate"
        description = "puts a value the database cannot encode into one contact's metadata"

        async def process(
            self, contact: InboundContact, decision: Decision, ctx: RoutingContext
        ) -> None:
            if contact.text == "odd":
                decision.meta["when"] = datetime.now(UTC)

    async with hub_with_step(settings, Annotate) as running:
        results = await asyncio.gather(
            running.ingestor.ingest(sms("+491715559001", "SMa")),
            running.ingestor.ingest(sms("+491715559002", "SMb", text="odd")),
            running.ingestor.ingest(sms("+491715559003", "SMc")),
            return_exceptions=True,
        )
    assert [type(r).__name__ for r in results] == ["IngestResult", "IngestError", "IngestResult"]
    assert str(results[1]).startswith("refused by the database: ")
    assert await stored(db) == ["SMa", "SMc"]


async def test_nul_characters_in_text_are_kept_as_replacement_characters(
    hub: Hub, db: Database
) -> None:
    await hub.ingestor.ingest(sms("+491715559101", "SMnul", text="a\x00b", subject="s\x00"))
    async with db.read() as s:
        row = (await s.exec(select(Interaction.text, Interaction.subject))).one()  # type: ignore[call-overload]
    assert tuple(row) == ("a\ufffdb", "s\ufffd")
    with pytest.raises(IngestError, match="must not contain NUL"):
        await hub.ingestor.ingest(sms("+491715559101", "SM\x00x"))


async def test_an_unreachable_database_is_reported_as_retryable() -> None:
    # A real outage: nothing listens on this port (port 1 is never a PostgreSQL server).
    db = Database(DatabaseConfig(url="postgresql+asyncpg://postgres@127.0.0.1:1/crmhub"))
    pipelines = {Channel.SMS: [ThreadConversation()]}
    ingestor = Ingestor(db, EventBus(), pipelines, TeamRouter(1, {}), region="DE")
    await ingestor.start()
    try:
        with pytest.raises(IngestUnavailable, match="database unavailable; retry"):
            await ingestor.ingest(sms("+491715559201", "SMdown"))
    finally:
        await ingestor.stop()
        await db.close()


def test_metadata_check_accepts_what_json_encodes_and_nothing_else() -> None:
    """`prepare` skips json.dumps for plainly JSON metadata; the verdict must not change."""
    from hub.ingest.pipeline import _plain_json

    circular: list[object] = []
    circular.append(circular)
    cases: list[object] = [
        {"a": "x", "b": 1, "c": 1.5, "d": True, "e": None, "f": [1, {"g": []}]},
        {"nan": float("nan")},
        {1: "int key"},  # json.dumps accepts it: the slow path decides
        {"t": (1, 2)},
        {"at": datetime.now(UTC)},
        {"s": {1, 2}},
        {"deep": circular},
        {"b": b"bytes"},
    ]
    for value in cases:
        try:
            json.dumps(value)
            encodes = True
        except (TypeError, ValueError):
            encodes = False
        if _plain_json(value):
            assert encodes, value
    assert _plain_json(cases[0]) and _plain_json(cases[1])
    assert not _plain_json(cases[2]) and not _plain_json(cases[6])


async def test_a_write_through_rides_with_contacts_in_one_commit(hub: Hub, db: Database) -> None:
    """The event log's write joins the contacts' transaction: one batch, both stored."""
    written: list[int] = []

    async def write(conn: object) -> None:
        written.append(hub.ingestor.batches)

    batches = hub.ingestor.batches
    contacts = [sms(f"+4917155570{i:02d}", f"SMr{i}") for i in range(3)]
    results = await asyncio.gather(
        hub.ingestor.write_through(write), *[hub.ingestor.ingest(c) for c in contacts]
    )
    assert results[0] is None and [r.duplicate for r in results[1:]] == [False] * 3
    assert hub.ingestor.batches == batches + 1  # no transaction of its own
    assert written == [batches + 1]
    assert await stored(db) == ["SMr0", "SMr1", "SMr2"]


async def test_a_failing_write_through_does_not_fail_the_contacts_it_rode_with(
    hub: Hub, db: Database
) -> None:
    """It fails alone: the contacts are stored without it, then it runs alone and fails."""
    tries = 0

    async def write(conn: object) -> None:
        nonlocal tries
        tries += 1
        raise ValueError("the event log refuses")

    contacts = [sms(f"+4917155571{i:02d}", f"SMf{i}") for i in range(3)]
    results = await asyncio.gather(
        hub.ingestor.write_through(write),
        *[hub.ingestor.ingest(c) for c in contacts],
        return_exceptions=True,
    )
    assert type(results[0]).__name__ == "IngestError"
    assert "the event log refuses" in str(results[0])
    assert [type(r).__name__ for r in results[1:]] == ["IngestResult"] * 3
    assert tries == 2  # riding, then alone
    assert await stored(db) == ["SMf0", "SMf1", "SMf2"]


async def test_a_locked_database_is_not_tried_again_without_the_riders(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An outage is nobody's fault: one wait for the lock, not a second one without the
    rider (two busy timeouts would keep Twilio's webhooks waiting past its 15 s)."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    tries: list[tuple[int, bool]] = []

    async def locked(items: list[object], *, extra: object = None, strict: bool = False) -> None:
        tries.append((len(items), extra is not None))
        cause = sqlite3.OperationalError("database is locked")
        cause.sqlite_errorcode = sqlite3.SQLITE_BUSY  # type: ignore[attr-defined]
        raise OperationalError("BEGIN IMMEDIATE", {}, cause)

    monkeypatch.setattr(hub.ingestor, "_store", locked)

    async def write(conn: object) -> None:
        raise AssertionError("never runs")

    results = await asyncio.gather(
        hub.ingestor.write_through(write),
        hub.ingestor.ingest(sms("+491715557200", "SMlock")),
        return_exceptions=True,
    )
    assert [type(r).__name__ for r in results] == ["IngestUnavailable", "IngestUnavailable"]
    assert tries == [(1, True), (0, True)]  # with the rider; then the rider alone
