"""Attachment files that no history entry names: left by a crash, or by erasure.

A file is written and fsynced before the commit that references it, so a
crash between the two leaves a file nobody names (and an interrupted write
leaves a ".tmp-" file). Nothing is lost by removing them; the grace period
keeps a file whose commit is still on its way.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from sqlalchemy import select

from channels.email.attachments import AttachmentStore
from hub.store.db import Database
from hub.store.tables import attachment_t


@dataclass(frozen=True, slots=True)
class SweepReport:
    orphans: int
    bytes: int
    removed: bool


async def sweep_orphans(
    db: Database, store: AttachmentStore, *, grace_seconds: float = 3600, dry_run: bool = False
) -> SweepReport:
    async with db.read() as s:
        conn = await s.connection()
        result = await conn.stream(select(attachment_t.c.sha256).distinct())
        named = {row[0] async for row in result if row[0]}

    def sweep() -> SweepReport:
        cutoff = time.time() - grace_seconds
        count = size = 0
        for name, path in list(store.files()):
            if name in named:
                continue
            try:
                if path.stat().st_mtime > cutoff:
                    continue  # maybe a commit on its way
            except FileNotFoundError:
                continue
            count += 1
            size += path.stat().st_size if dry_run else store.remove(path)
        return SweepReport(count, size, not dry_run)

    return await asyncio.to_thread(sweep)
