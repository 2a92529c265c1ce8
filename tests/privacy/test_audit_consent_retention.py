"""The audit log, consent over the API, retention, and their commands."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from channels.base import Channel, InboundContact
from hub.config import RetentionRule
from hub.privacy.retention import apply_retention
from hub.runtime import Hub
from hub.store.tables import audit_t, interaction_t, quarantine_t
from tests.support.api import Api
from tests.support.imports import crmhub
from tests.support.mail import hold

pytestmark = pytest.mark.db


async def test_reads_changes_and_logins_are_in_the_audit_log(api: Api, hub: Hub) -> None:
    _, created = await api.call("POST", "/api/v1/customers", "agent", json={"name": "Ann"})
    cid = created["id"]
    assert (await api.call("GET", f"/api/v1/customers/{cid}", "agent"))[0] == 200
    assert (await api.call("GET", f"/api/v1/customers/{cid}/timeline", "agent"))[0] == 200
    assert (await api.call("GET", "/api/v1/customers?q=Ann", "agent"))[0] == 200
    await api.call("POST", "/api/v1/auth/token", None, json={"username": "agent", "password": "x"})

    status, body = await api.call("GET", f"/api/v1/audit?customer_id={cid}")
    assert status == 200
    agent = api.user_ids["agent"]
    assert [
        (
            e["actor_id"],
            e["action"],
            e["entity"],
            e["entity_id"],
            e["client"],
            e["detail"].get("route"),
        )
        for e in body["items"]
    ] == [
        # Written by the change itself, in its transaction; then the request's entry.
        (agent, "create", "customer", cid, None, None),
        (agent, "create", "customer", None, "127.0.0.1", "POST /api/v1/customers"),
        (agent, "read", "customer", cid, "127.0.0.1", "GET /api/v1/customers/{id}"),
        (agent, "read", "customer", cid, "127.0.0.1", "GET /api/v1/customers/{id}/timeline"),
    ]
    _, failed = await api.call("GET", "/api/v1/audit?action=login_failed")
    assert [(e["actor_id"], e["detail"]) for e in failed["items"]] == [
        (None, {"username": "agent"})
    ]
    _, searches = await api.call("GET", f"/api/v1/audit?action=search&user_id={agent}")
    assert [e["detail"]["route"] for e in searches["items"]] == ["GET /api/v1/customers"]
    # Only admins read it.
    assert (await api.call("GET", "/api/v1/audit", "sup"))[0] == 403


async def test_consent_is_recorded_with_its_source_and_shown_on_the_customer(api: Api) -> None:
    _, created = await api.call("POST", "/api/v1/customers", json={"name": "Cora"})
    cid = created["id"]
    assert created["consent"] == []
    for state, source in (("opted_in", "web form"), ("opted_out", "phone call with agent")):
        status, body = await api.call(
            "POST",
            f"/api/v1/customers/{cid}/consent",
            json={"channel": "email", "state": state, "source": source},
        )
        assert status == 201
    [consent] = body["consent"]
    assert {k: consent[k] for k in ("channel", "purpose", "state", "source")} == {
        "channel": "email",
        "purpose": "marketing",
        "state": "opted_out",
        "source": "phone call with agent",
    }
    _, customer = await api.call("GET", f"/api/v1/customers/{cid}")
    assert customer["consent"] == body["consent"]
    status, err = await api.call(
        "POST", f"/api/v1/customers/{cid}/consent", json={"channel": "fax", "state": "opted_in"}
    )
    assert status == 422
    assert {p["field"] for p in err["detail"]} == {"channel", "source"}


async def _history(hub: Hub) -> list[tuple[str, str, str, str]]:
    async with hub.db.read() as s:
        conn = await s.connection()
        rows = await conn.execute(
            select(
                interaction_t.c.provider_id,
                interaction_t.c.channel,
                interaction_t.c.text,
                interaction_t.c.sender,
            ).order_by(interaction_t.c.id)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


async def test_retention_counts_then_anonymises_or_deletes_what_is_old(hub: Hub) -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    for sid, days, channel, sender in (
        ("old-sms", 400, Channel.SMS, "+491711110001"),
        ("new-sms", 10, Channel.SMS, "+491711110001"),
        ("old-mail", 400, Channel.EMAIL, "old@example.org"),
    ):
        await hub.ingestor.ingest(
            InboundContact(
                channel,
                sender,
                text=f"text of {sid}",
                provider_id=sid,
                occurred_at=now - timedelta(days=days),
            )
        )
    # Raw mail once quarantined, then released into the old and the new SMS entries.
    history = {sid: iid for sid, iid in await _ids(hub)}
    kept = await hold(hub.db, 31, b"From: x@example.org\r\n\r\nnew", "x")
    for uid, sid in ((30, "old-sms"), (31, "new-sms"), (32, "old-mail")):
        qid = kept if uid == 31 else await hold(hub.db, uid, b"From: x@example.org\r\n\r\nold", "x")
        async with hub.db.write() as s:
            await (await s.connection()).execute(
                quarantine_t.update()
                .where(quarantine_t.c.id == qid)
                .values(status="released", interaction_id=history[sid])
            )
    rules = [
        RetentionRule(channel="sms", days=365, action="anonymise"),
        RetentionRule(channel="email", direction="in", days=365, action="delete"),
    ]
    dry = await apply_retention(hub.db, rules, dry_run=True, now=now)
    assert [r.count for r in dry] == [1, 1]
    assert len(await _history(hub)) == 3
    done = await apply_retention(hub.db, rules, dry_run=False, now=now)
    assert [r.count for r in done] == [1, 1]
    assert await _history(hub) == [
        ("old-sms", "sms", "", ""),
        ("new-sms", "sms", "text of new-sms", "+491711110001"),
    ]
    again = await apply_retention(hub.db, rules, dry_run=True, now=now)
    assert [r.count for r in again] == [0, 0]
    async with hub.db.read() as s:
        raw = (await (await s.connection()).execute(select(quarantine_t.c.id))).scalars().all()
    assert list(raw) == [kept]


async def _ids(hub: Hub) -> list[tuple[str, int]]:
    async with hub.db.read() as s:
        conn = await s.connection()
        rows = await conn.execute(select(interaction_t.c.provider_id, interaction_t.c.id))
        return [(str(p), int(i)) for p, i in rows]


async def test_the_privacy_commands(hub: Hub, api: Api, tmp_path: Path, capsys: Any) -> None:
    _, created = await api.call("POST", "/api/v1/customers", json={"name": "Dora"})
    cid = created["id"]
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"database:\n  url: {hub.settings.database.url}\n"
        f"email:\n  attachments_dir: {tmp_path / 'att'}\n"
    )
    base = ["-c", str(cfg)]
    out = tmp_path / "dora.zip"
    assert await crmhub([*base, "privacy", "export", str(cid), "-o", str(out)]) == 0
    assert out.is_file()
    assert await crmhub([*base, "privacy", "erase", str(cid)]) == 1
    assert await crmhub([*base, "privacy", "erase", str(cid), "--yes"]) == 1  # no key
    assert await crmhub([*base, "retention", "run", "--dry-run"]) == 1  # no rules
    assert await crmhub([*base, "export", "customers", "-o", str(tmp_path / "all.csv")]) == 0
    assert await crmhub([*base, "audit", "--customer", str(cid), "--action", "subject_export"]) == 0
    lines = capsys.readouterr()
    assert lines.out.splitlines()[0].startswith("wrote ")
    assert lines.err.splitlines() == [
        f"crmhub: erasing customer {cid} cannot be undone; add --yes",
        "crmhub: set CRMHUB_PRIVACY__SUPPRESSION_KEY (16+ characters): erasure keeps keyed "
        "hashes of the identities so that an opted-out person is never contacted again",
        "crmhub: no retention rules: add them under privacy.retention in config.yaml",
    ]
    [header, entry] = lines.out.splitlines()[1:]
    assert header.startswith("id\tat\tactor_id\taction")
    assert entry.split("\t")[3:8] == ["subject_export", "customer", str(cid), str(cid), "cli"]
    async with hub.db.read() as s:
        conn = await s.connection()
        exports = await conn.execute(
            select(audit_t.c.entity, audit_t.c.detail).where(audit_t.c.action == "export")
        )
        assert [tuple(r) for r in exports] == [
            ("customers", {"rows": 1, "format": "csv", "to": str(tmp_path / "all.csv")})
        ]
