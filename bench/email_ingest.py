"""Email ingest benchmark: N messages in a real Dovecot, then the time until all are in the history.

Starts a Dovecot (the test configuration, tests/support/dovecot.py) on a free port,
APPENDs N varied messages to one mailbox (not timed: that is the mail
server's work), then runs crmhub's IMAP sync once over a fresh database and
times it from the first IMAP command to the last commit: LOGIN, SELECT,
UID SEARCH, FETCH BODY.PEEK[] in chunks, parsing, ingest of each chunk with
its checkpoint in one transaction, and flagging \\Seen. It checks that the
history holds exactly N interactions. Goal (2-core machine): >= 500
messages/s. It prints figures and asserts nothing about them.

    .venv/bin/python bench/email_ingest.py                       # 5,000 messages, SQLite
    .venv/bin/python bench/email_ingest.py --messages 20000 --batch-size 500
    .venv/bin/python bench/email_ingest.py --db postgresql+asyncpg://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/email_ingest.py --bare                # and the bare loop, ratio

With `--bare` the same run also times a bare loop over the same mailbox, once
before crmhub's sync (Dovecot's first read of the maildir) and once after:
imapclient LOGIN, SELECT, UID SEARCH, FETCH BODY.PEEK[] INTERNALDATE in
chunks of the same size, stdlib `email.message_from_bytes(...,
policy=email.policy.default)` and the body (`get_body()`, plain before
HTML, `get_content()`), no database, no flags; it prints messages/s of each
pass and the ratio crmhub / bare (the pass after, both on a warm Dovecot).

The mix: 1,000 senders (below the mail-loop threshold), a third of the
messages are replies (In-Reply-To, a quoted part), a fifth are HTML only,
one in ten carries a small attachment, a few have encoded headers.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import os
import shutil
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

if not __package__:  # run as `python bench/email_ingest.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select

from bench.target import prepare_target
from channels.email.imap_sync import MailboxSync
from hub.config import load_settings
from hub.mail.store import MailStore
from hub.runtime import Hub
from hub.store.migrate import upgrade
from hub.store.tables import interaction_t
from tests.support.dovecot import DOVECOT, PASSWORD, append
from tests.support.dovecot import launch as start_dovecot

USER = "bench@example.com"
PASSWORD_ENV = "CRMHUB_BENCH_IMAP_PASSWORD"


def make_message(n: int) -> bytes:
    mail = EmailMessage()
    sender = n % 1000
    mail["From"] = f"Kundin {sender} <kundin{sender}@example.org>"
    mail["To"] = "support@example.com"
    mail["Date"] = "Thu, 26 Nov 2026 10:00:00 +0100"
    mail["Message-ID"] = f"<bench{n}@example.org>"
    subject = f"Frage zu Auftrag {n}" if n % 7 else f"Frage zu Auftrag {n}: Größe €"
    if n % 3 == 0 and n > 0:
        mail["In-Reply-To"] = f"<bench{n - 3}@example.org>"
        mail["References"] = f"<bench{n - 3}@example.org>"
        subject = "Re: " + subject
    mail["Subject"] = subject
    body = f"Guten Tag,\n\nich habe eine Frage zu Auftrag {n}.\n" + "Mit Grüßen\n" * 5
    if n % 3 == 0:
        body += "\nAm 25.11.2026 schrieb support@example.com:\n" + "> alter Text\n" * 10
    if n % 5 == 0:
        html = "<html><body><p>" + body.replace("\n", "<br>") + "</p></body></html>"
        mail.set_content(html, subtype="html")
    else:
        mail.set_content(body)
    if n % 10 == 1:
        mail.add_attachment(
            os.urandom(8_000), maintype="application", subtype="pdf", filename=f"r{n}.pdf"
        )
    return bytes(mail)


def bare_loop(port: int, n: int, batch_size: int) -> float:
    """The floor: fetch and parse every message like the sync, nothing else; messages/s."""
    from imapclient import IMAPClient

    started = time.perf_counter()
    parsed = chars = 0
    with IMAPClient("127.0.0.1", port=port, ssl=False) as imap:
        imap.login(USER, PASSWORD)
        imap.select_folder("INBOX")
        uids = sorted(imap.search(["UID", "1:*"]))
        for start in range(0, len(uids), batch_size):
            data = imap.fetch(uids[start : start + batch_size], ["BODY.PEEK[]", "INTERNALDATE"])
            for uid in uids[start : start + batch_size]:
                raw = data[uid][b"BODY[]"]
                msg = email.message_from_bytes(raw, policy=email.policy.default)
                body = msg.get_body(preferencelist=("plain", "html"))
                chars += len(body.get_content()) if body is not None else 0
                parsed += 1
        imap.logout()
    seconds = time.perf_counter() - started
    if parsed != n:
        print(f"bare loop: MISMATCH: expected {n} messages, parsed {parsed}")
    print(
        f"bare loop: {parsed} messages, batch {batch_size}: {seconds:.2f} s, "
        f"{parsed / seconds:,.0f} messages/s ({chars:,} body characters)"
    )
    return parsed / seconds


async def run(url: str, port: int, tmp: Path, n: int, batch_size: int) -> float:
    os.environ[PASSWORD_ENV] = PASSWORD
    settings = load_settings(
        Path(__file__).parent.parent / "tests" / "empty.yaml",
        database={"url": url},
        email={
            "attachments_dir": str(tmp / "attachments"),
            "reply_token_secret": "bench-secret-0123456789",
            "mailboxes": [
                {
                    "name": "support",
                    "address": "support@example.com",
                    "imap": {
                        "host": "127.0.0.1",
                        "port": port,
                        "tls": "none",
                        "user": USER,
                        "password_env": PASSWORD_ENV,
                        "mode": "poll",
                        "batch_size": batch_size,
                    },
                }
            ],
        },
    )
    hub = Hub(settings)
    await hub.start()
    mailbox = settings.email.mailboxes[0]
    assert mailbox.imap is not None
    store = MailStore(hub.db, hub.ingestor, mailbox, settings.email, hub.attachments)
    sync = MailboxSync(mailbox.name, mailbox.imap, PASSWORD, store.checkpoint, store.store)
    try:
        started = time.perf_counter()
        stored = await sync.sync_once()
        seconds = time.perf_counter() - started
    finally:
        await sync.stop()
    async with hub.db.read() as s:
        conn = await s.connection()
        in_history = (
            await conn.execute(select(func.count()).select_from(interaction_t))
        ).scalar_one()
    await hub.stop()
    print(
        f"email ingest: {n} messages, batch {batch_size}: {seconds:.2f} s, "
        f"{n / seconds:,.0f} messages/s (sync stored {stored}, history {in_history}, "
        f"quarantined {store.quarantined})"
    )
    if in_history != n:
        print(f"email ingest: MISMATCH: expected {n} interactions, found {in_history}")
    return n / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--db", help="database URL (PostgreSQL: the server; default SQLite)")
    parser.add_argument("--bare", action="store_true", help="also the bare imapclient loop")
    args = parser.parse_args(argv)
    if not os.access(DOVECOT, os.X_OK):
        raise SystemExit("bench: Dovecot is not installed (apt-get install dovecot-imapd)")
    tmp = Path(tempfile.mkdtemp(prefix="crmhub-bench-mail-"))
    server = start_dovecot(tmp)
    target = prepare_target(args.db, keep=False)
    try:
        messages = [make_message(n) for n in range(args.messages)]
        t = time.perf_counter()
        append(server, USER, "INBOX", *messages)
        print(f"appended {len(messages)} messages in {time.perf_counter() - t:.1f} s (not timed)")
        upgrade(target.url)
        print(f"load average before {[round(x, 2) for x in os.getloadavg()]}")
        if args.bare:
            bare_loop(server.port, args.messages, args.batch_size)  # Dovecot's first read
        rate = asyncio.run(run(target.url, server.port, tmp, args.messages, args.batch_size))
        if args.bare:
            bare = bare_loop(server.port, args.messages, args.batch_size)
            print(f"ratio crmhub/bare {rate / bare:.2f}x (bare pass after crmhub's sync)")
    finally:
        target.cleanup()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
