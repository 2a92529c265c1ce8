"""Shared pieces of the hub-level IMAP tests: settings for a mailbox on the test Dovecot,
building and appending messages, and reading back what the hub stored."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import func, select

from hub.config import Settings
from hub.runtime import Hub
from hub.store.db import Database
from hub.store.models import QuarantineStatus, utcnow
from hub.store.tables import checkpoint_t, interaction_t, quarantine_t
from tests.support.dovecot import ImapServer, append, folder_flags
from tests.support.hubs import make_settings

__all__ = ["append", "folder_flags"]  # re-exported for the mail tests

PASSWORD_ENV = "CRMHUB_TEST_IMAP_PASSWORD"
SECRET = "test-reply-token-secret-0123456789"
T = TypeVar("T")


def mail_settings(
    db_url: str,
    server: ImapServer,
    user: str,
    tmp: Path,
    smtp: dict[str, Any] | None = None,
    **imap: Any,
) -> Settings:
    imap_config: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "tls": "none",
        "user": user,
        "password_env": PASSWORD_ENV,
        "mode": "poll",
        "poll_seconds": 0.2,
        "timeout": 10,
        "reconnect_min_seconds": 0.05,
        "reconnect_max_seconds": 0.2,
    }
    imap_config.update(imap)
    return make_settings(
        db_url,
        email={
            "attachments_dir": str(tmp / "attachments"),
            "reply_token_secret": SECRET,
            "mailboxes": [
                {
                    "name": "support",
                    "address": "support@example.com",
                    "imap": imap_config,
                    "smtp": smtp,
                }
            ],
        },
    )


def new_user() -> str:
    return f"u{uuid.uuid4().hex[:12]}@example.com"


def message(n: int, *, sender: str = "kundin@example.org", **headers: str) -> bytes:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = headers.pop("To", "support@example.com")
    mail["Subject"] = headers.pop("Subject", f"Frage {n}")
    mail["Date"] = "Thu, 26 Nov 2026 10:00:00 +0100"
    if "Message-ID" not in headers:
        mail["Message-ID"] = f"<m{n}@example.org>"
    for name, value in headers.items():
        if value:
            mail[name] = value
    mail.set_content(f"Nachricht Nummer {n}\n")
    return bytes(mail)


async def provider_ids(hub: Hub) -> list[str]:
    async with hub.db.read() as s:
        conn = await s.connection()
        rows = await conn.execute(
            select(interaction_t.c.provider_id)
            .where(interaction_t.c.channel == "email")
            .order_by(interaction_t.c.id)
        )
        return [r[0] for r in rows]


async def checkpoint(hub: Hub, folder: str = "INBOX") -> tuple[int, int] | None:
    async with hub.db.read() as s:
        conn = await s.connection()
        row = (
            await conn.execute(
                select(checkpoint_t.c.uidvalidity, checkpoint_t.c.last_uid).where(
                    checkpoint_t.c.folder == folder
                )
            )
        ).first()
        return (row[0], row[1]) if row else None


async def quarantine_count(hub: Hub) -> int:
    async with hub.db.read() as s:
        conn = await s.connection()
        return int(
            (await conn.execute(select(func.count()).select_from(quarantine_t))).scalar_one()
        )


async def eventually(check: Callable[[], Awaitable[T | None]], seconds: float = 30.0) -> T:
    """Wait for a background task's effect; a deadline, not a speed assertion."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.05)


async def hold(db: Database, uid: int, raw: bytes, error: str) -> int:
    """A message held in the quarantine of mailbox "support", as the sync would hold it."""
    now = utcnow()
    async with db.write() as s:
        conn = await s.connection()
        insert = quarantine_t.insert().values(
            mailbox="support",
            folder="INBOX",
            uidvalidity=7,
            uid=uid,
            raw=raw,
            error=error,
            status=QuarantineStatus.HELD.value,
            attempts=1,
            created_at=now,
            updated_at=now,
        )
        return int((await conn.execute(insert.returning(quarantine_t.c.id))).scalar_one())
