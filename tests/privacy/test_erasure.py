"""Erasure: the person's data is gone from the database files; opt-outs are kept as hashes."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from channels.base import AttachmentRef, Channel, InboundContact
from hub.privacy.erase import _checkpoint
from hub.records.auth import create_user, issue_token
from hub.runtime import Hub
from hub.store.db import Database
from hub.store.models import Consent, Role
from hub.store.tables import audit_t, customer_t, interaction_t, quarantine_t, suppression_t
from tests.support.hubs import make_settings
from tests.support.mail import hold

pytestmark = pytest.mark.db

PHONE = "+4917000424242"
EMAIL = "erika.erase@example.org"
NAME = "Erika Loeschmich"


async def _person(hub: Hub) -> int:
    """Erika writes by SMS and by mail (with a file), opts out of SMS, has a task."""
    sms = await hub.ingestor.ingest(
        InboundContact(Channel.SMS, PHONE, text=f"Hallo, hier {NAME}", provider_id="SMerase1")
    )
    blob = hub.attachments.put(b"Erikas Vertrag, vertraulich")
    await hub.ingestor.ingest(
        InboundContact(
            Channel.EMAIL,
            EMAIL,
            sender_name=NAME,
            subject="Vertrag",
            text="anbei",
            provider_id="<erase-1@example.org>",
            attachments=(AttachmentRef("v.pdf", "application/pdf", 27, sha256=blob),),
        )
    )
    async with hub.db.write() as s:
        conn = await s.connection()
        await conn.execute(
            customer_t.update().where(customer_t.c.id == sms.customer_id).values(name=NAME)
        )
        s.add(Consent(customer_id=sms.customer_id, channel="sms", state="opted_out", source="STOP"))
    return sms.customer_id


def _files(url: str) -> bytes:
    path = Path(str(make_url(url).database))
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*") if p.is_file())


async def test_erasure_removes_the_person_and_keeps_only_keyed_hashes(
    erasing: tuple[Hub, TestClient[Any, Any], str], tmp_path: Path
) -> None:
    hub, client, token = erasing
    auth = {"Authorization": f"Bearer {token}"}
    customer_id = await _person(hub)
    # The email customer is another record (no link between the two identities yet):
    # merge it in, so one erasure covers both.
    async with hub.db.read() as s:
        conn = await s.connection()
        ids = list(
            (await conn.execute(select(customer_t.c.id).order_by(customer_t.c.id))).scalars()
        )
    other = [i for i in ids if i != customer_id][-1]
    resp = await client.post(f"/api/v1/customers/{customer_id}/merge/{other}", headers=auth)
    assert resp.status == 200
    await hold(hub.db, 9, f"From: {NAME} <{EMAIL}>\r\nSubject: kaputt\r\n\r\n\x00".encode(), "x")
    # Somebody read her card: the audit entry is about her.
    assert (await client.get(f"/api/v1/customers/{customer_id}", headers=auth)).status == 200
    await hub.audit.flush()

    if hub.db.sqlite:
        # Her rows in the main file, not only in the WAL: only zeroing on delete
        # (secure_delete) removes them from there.
        _checkpoint(hub.settings.database.url)
        assert PHONE.encode() in _files(hub.settings.database.url)
    resp = await client.post(f"/api/v1/customers/{customer_id}/erase", headers=auth)
    assert resp.status == 200
    assert await resp.json() == {
        "customer_id": customer_id,
        "identities": 2,
        "history_entries": 2,
        "files": 1,
        "quarantined_messages": 1,
        "opted_out_identities_kept_as_hashes": 1,
    }
    async with hub.db.read() as s:
        conn = await s.connection()
        left = (
            await conn.execute(
                select(func.count())
                .select_from(interaction_t)
                .where(interaction_t.c.customer_id == customer_id)
            )
        ).scalar_one()
        kept = (await conn.execute(select(suppression_t.c.kind, suppression_t.c.opted_out))).all()
        audit = (
            await conn.execute(
                select(audit_t.c.action, audit_t.c.detail)
                .where(audit_t.c.customer_id == customer_id)
                .order_by(audit_t.c.id)
            )
        ).all()
    assert left == 0
    assert sorted((k, bool(o)) for k, o in kept) == [("email", False), ("phone", True)]
    assert audit[-1] == ("erase", {"identities": 2, "interactions": 2})
    assert all(detail == {} for _, detail in audit[:-1])
    assert not any((tmp_path / "att").rglob("*" + "?" * 60))  # the file is gone
    if hub.db.sqlite:
        on_disk = _files(hub.settings.database.url)
        for secret in (PHONE, EMAIL, NAME, "Vertrag"):
            assert secret.encode() not in on_disk, secret

    # A new SMS from her number starts a fresh, empty lead ...
    fresh = await hub.ingestor.ingest(
        InboundContact(Channel.SMS, PHONE, text="neu", provider_id="SMerase2")
    )
    assert fresh.created_customer and fresh.customer_id != customer_id
    # ... whom nothing is sent: she had opted out before her data was erased.
    resp = await client.post(
        f"/api/v1/conversations/{fresh.conversation_id}/reply", headers=auth, json={"text": "Hi"}
    )
    assert (resp.status, await resp.json()) == (
        409,
        {
            "error": "conflict",
            "detail": "the recipient opted out before their data was erased; nothing was sent",
        },
    )


async def test_erasure_needs_the_suppression_key(db_url: str, db: Database, tmp_path: Path) -> None:
    from hub.privacy.erase import ErasureError, erase_customer

    hub = Hub(make_settings(db_url))
    await hub.start()
    try:
        customer_id = await _person(hub)
        with pytest.raises(ErasureError, match=r"^set CRMHUB_PRIVACY__SUPPRESSION_KEY"):
            await erase_customer(
                hub.db, hub.attachments, "", customer_id, actor_id=None, client=None
            )
        async with hub.db.read() as s:
            conn = await s.connection()
            assert (
                await conn.execute(select(func.count()).select_from(customer_t))
            ).scalar_one() >= 1
    finally:
        await hub.stop()


async def test_subject_export_holds_everything_about_the_person(
    erasing: tuple[Hub, TestClient[Any, Any], str],
) -> None:
    hub, client, token = erasing
    auth = {"Authorization": f"Bearer {token}"}
    customer_id = await _person(hub)
    resp = await client.post(
        "/api/v1/tasks", headers=auth, json={"customer_id": customer_id, "title": "Rückruf"}
    )
    assert resp.status == 201
    # Raw mail a colleague forwarded, quarantined, then released into her history.
    raw = f"From: kollege@example.com\r\nSubject: Fwd\r\n\r\n{NAME}\r\n".encode()
    forwarded = await hold(hub.db, 41, raw, "too deep")
    await hold(hub.db, 42, b"From: someone@example.net\r\n\r\nnot hers\r\n", "x")
    async with hub.db.write() as s:
        conn = await s.connection()
        await conn.execute(
            quarantine_t.update()
            .where(quarantine_t.c.id == forwarded)
            .values(
                status="released",
                interaction_id=select(interaction_t.c.id)
                .where(interaction_t.c.customer_id == customer_id)
                .scalar_subquery(),
            )
        )
    resp = await client.get(f"/api/v1/customers/{customer_id}/export", headers=auth)
    assert (resp.status, resp.content_type) == (200, "application/zip")
    import io

    archive = zipfile.ZipFile(io.BytesIO(await resp.read()))
    data = json.loads(archive.read("data.json"))
    assert data["customer"]["name"] == NAME
    assert [i["value"] for i in data["identities"]] == [PHONE]
    assert [(c["channel"], c["state"], c["source"]) for c in data["consent_history"]] == [
        ("sms", "opted_out", "STOP")
    ]
    assert [h["text"] for h in data["history"]] == [f"Hallo, hier {NAME}"]
    assert [t["title"] for t in data["tasks"]] == ["Rückruf"]
    assert {a["action"] for a in data["audit"]} >= {"create"}
    assert [(q["id"], q["error"], q["status"]) for q in data["quarantined_mail"]] == [
        (forwarded, "too deep", "released")
    ]
    assert archive.read(f"quarantine/{forwarded}.eml") == raw
    assert sorted(n for n in archive.namelist() if n.startswith("quarantine/")) == [
        f"quarantine/{forwarded}.eml"
    ]
    # The export itself is in the audit log as soon as the archive is out (not queued).
    async with hub.db.read() as s:
        conn = await s.connection()
        exported = (
            await conn.execute(
                select(audit_t.c.actor_id, audit_t.c.client).where(
                    audit_t.c.action == "subject_export", audit_t.c.customer_id == customer_id
                )
            )
        ).all()
    assert [(r.actor_id is not None, r.client) for r in exported] == [(True, "127.0.0.1")]
    # Not an admin: 403.
    await create_user(hub.db, "agent7", role=Role.AGENT, teams=["Support"])
    agent = {"Authorization": f"Bearer {await issue_token(hub.db, 'agent7')}"}
    resp = await client.get(f"/api/v1/customers/{customer_id}/export", headers=agent)
    assert resp.status == 403


async def test_erasure_removes_raw_mail_released_into_her_history_and_keeps_others(
    erasing: tuple[Hub, TestClient[Any, Any], str],
) -> None:
    """A colleague forwarded her mail; it was quarantined, then released into her
    history. Its sender is not hers, but the raw message names her: it goes too.
    A held message from somebody else stays."""
    hub, client, token = erasing
    customer_id = await _person(hub)
    forwarded = await hold(
        hub.db,
        21,
        f"From: Kollege <kollege@example.com>\r\nSubject: Fwd\r\n\r\n{NAME} {PHONE}\r\n".encode(),
        "x",
    )
    other = await hold(hub.db, 22, b"From: someone@example.net\r\nSubject: x\r\n\r\nhi\r\n", "x")
    async with hub.db.write() as s:
        conn = await s.connection()
        entry = (
            await conn.execute(
                select(interaction_t.c.id).where(interaction_t.c.customer_id == customer_id)
            )
        ).scalar_one()
        await conn.execute(
            quarantine_t.update()
            .where(quarantine_t.c.id == forwarded)
            .values(status="released", interaction_id=entry)
        )
    resp = await client.post(
        f"/api/v1/customers/{customer_id}/erase",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert resp.status == 200
    assert (await resp.json())["quarantined_messages"] == 1
    async with hub.db.read() as s:
        conn = await s.connection()
        left = (await conn.execute(select(quarantine_t.c.id).order_by(quarantine_t.c.id))).all()
    assert [r.id for r in left] == [other]
    if hub.db.sqlite:
        assert PHONE.encode() not in _files(hub.settings.database.url)
