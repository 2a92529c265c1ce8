"""Subject access export: everything held about one person, in one zip archive.

`data.json` holds the record, identities, tags, consent history,
conversations, the whole history (notes included) with its metadata, tasks,
outbound messages as queued (bodies included) and the audit entries about
them; `attachments/<sha256>` holds every file of their history and
`quarantine/<id>.eml` the raw mail the quarantine holds from or about them
(`quarantined_mail` in data.json describes it). Read from
one snapshot, so the parts agree with each other.
"""

from __future__ import annotations

import asyncio
import json
import zipfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncConnection

from channels.email.attachments import AttachmentStore
from hub.errors import NotFound
from hub.privacy.held_mail import held_mail_of
from hub.records.consent import consent_history
from hub.store.db import Database
from hub.store.models import IdentityKind
from hub.store.tables import (
    attachment_t,
    audit_t,
    claim_t,
    conversation_t,
    customer_t,
    identity_t,
    interaction_t,
    outbox_t,
    quarantine_t,
    tag_t,
    task_t,
)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


async def _rows(conn: AsyncConnection, table: Table, where: Any) -> list[dict[str, Any]]:
    result = await conn.execute(select(table).where(where).order_by(table.c.id))
    return [{k: _plain(v) for k, v in row._mapping.items()} for row in result]


async def collect(conn: AsyncConnection, customer_id: int) -> dict[str, Any]:
    found = await _rows(conn, customer_t, customer_t.c.id == customer_id)
    if not found:
        raise NotFound(f"no customer {customer_id}")
    merged = await _rows(conn, customer_t, customer_t.c.merged_into_id == customer_id)
    ids = [customer_id, *(m["id"] for m in merged)]
    interactions = await _rows(conn, interaction_t, interaction_t.c.customer_id.in_(ids))
    attachments = await _rows(
        conn,
        attachment_t,
        attachment_t.c.interaction_id.in_([i["id"] for i in interactions]),
    )
    identities = await _rows(conn, identity_t, identity_t.c.customer_id.in_(ids))
    emails = {i["value"] for i in identities if i["kind"] == IdentityKind.EMAIL.value}
    held = await held_mail_of(
        conn, select(interaction_t.c.id).where(interaction_t.c.customer_id.in_(ids)), emails
    )
    quarantined = [
        {k: _plain(v) for k, v in row._mapping.items()}
        for row in await conn.execute(
            select(*(c for c in quarantine_t.c if c.name != "raw"))
            .where(quarantine_t.c.id.in_(sorted(held)))
            .order_by(quarantine_t.c.id)
        )
    ]
    return {
        "customer": found[0],
        "merged_records": merged,
        "identities": identities,
        # Given for this person while another team's customer holds them (claims.py).
        "identity_claims": await _rows(conn, claim_t, claim_t.c.customer_id.in_(ids)),
        "tags": [t["tag"] for t in await _rows_tags(conn, ids)],
        "consent_history": await consent_history(conn, customer_id),
        "conversations": await _rows(conn, conversation_t, conversation_t.c.customer_id.in_(ids)),
        "history": interactions,
        "attachments": attachments,
        "tasks": await _rows(conn, task_t, task_t.c.customer_id.in_(ids)),
        "outbound_messages": await _rows(conn, outbox_t, outbox_t.c.customer_id.in_(ids)),
        "audit": await _rows(conn, audit_t, audit_t.c.customer_id.in_(ids)),
        "quarantined_mail": quarantined,
    }


async def _rows_tags(conn: AsyncConnection, ids: Sequence[int]) -> list[dict[str, Any]]:
    result = await conn.execute(
        select(tag_t.c.tag).where(tag_t.c.customer_id.in_(ids)).order_by(tag_t.c.tag)
    )
    return [{"tag": t} for t in result.scalars()]


async def export_subject(
    db: Database, store: AttachmentStore, customer_id: int, out: Path
) -> dict[str, int]:
    """Write the archive to `out`; returns counts for the caller's summary."""
    async with db.read() as s:
        conn = await s.connection()
        data = await collect(conn, customer_id)
        raws = {
            qid: bytes(raw)
            for qid, raw in await conn.execute(
                select(quarantine_t.c.id, quarantine_t.c.raw).where(
                    quarantine_t.c.id.in_([q["id"] for q in data["quarantined_mail"]])
                )
            )
        }
    shas = sorted({a["sha256"] for a in data["attachments"] if a.get("sha256")})

    def write() -> int:
        files = 0
        tmp = out.with_name(out.name + ".part")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("data.json", json.dumps(data, ensure_ascii=False, indent=2))
            for sha in shas:
                if store.exists(sha):
                    archive.write(store.path_for(sha), f"attachments/{sha}")
                    files += 1
            for qid, raw in sorted(raws.items()):
                archive.writestr(f"quarantine/{qid}.eml", raw)
        tmp.replace(out)  # never a half-written archive under the real name
        return files

    files = await asyncio.to_thread(write)
    return {
        "history": len(data["history"]),
        "files": files,
        "audit": len(data["audit"]),
        "quarantined": len(raws),
    }
