"""kill -9 mid-campaign, twice: `crmhub serve` sends an email campaign into a real SMTP
sink, is killed with SIGKILL while sends are in flight, and started again.

Every consenting recipient gets the message, nobody opted out gets it, and the
only duplicates are messages that were in flight at a kill: the relay took them
but the dead node never recorded it. Those rows are counted as uncertain, and
the duplicates are at most the sends that can be in flight at the two kills. A
row taken over after the first kill can be in flight again at the second (its
copies then equal its attempts), so the bound is on sends, not on rows.
"""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from hub.campaigns.runs import start_run
from hub.campaigns.schemas import CampaignIn, StepIn
from hub.campaigns.store import create_campaign, set_status
from hub.records.consent import record_consent
from hub.records.customers import CustomerStore
from hub.records.schemas import CustomerIn
from hub.runtime import Hub
from hub.segments.store import create_segment
from hub.store.db import Database
from hub.store.tables import outbox_t
from hub.templating.render import TemplateParts
from hub.templating.store import create_template
from tests.campaigns.conftest import PUBLIC_URL, TOKEN_KEY
from tests.support.email_outbound import SUPPORT
from tests.support.hubs import make_settings
from tests.support.smtp_server import Recorder, SmtpServer, free_port

pytestmark = pytest.mark.db

PEOPLE = 80
OPTED_OUT = {7, 21, 50}  # indexes of customers who opted out of email
POOL = 2  # SMTP connections: at most this many sends in flight per node


class SlowRecorder(Recorder):
    """A relay that takes its time after accepting the data: kills land mid-send."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        await asyncio.sleep(0.03)
        return answer


def _config(tmp_path: Path, db_url: str, smtp: SmtpServer) -> Path:
    cfg = tmp_path / "crash.yaml"
    cfg.write_text(
        f"""database:
  url: {db_url}
server:
  access_log: false
  public_url: {PUBLIC_URL}
email:
  mailboxes:
    - name: support
      address: {SUPPORT}
      smtp:
        {{host: 127.0.0.1, port: {smtp.port}, tls: none, pool_size: {POOL}, rate_per_second: 1000}}
subscriptions:
  unsubscribe_address: unsubscribe@example.com
outbox:
  poll_seconds: 0.05
  lease_seconds: 1.5
  send_timeout_seconds: 1.0
campaigns:
  scheduler: false
"""
    )
    return cfg


START_SECONDS = 60


def _serve(cfg: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMHUB_")}
    env["CRMHUB_SUBSCRIPTIONS__TOKEN_KEY"] = TOKEN_KEY
    env["CRMHUB_EMAIL__REPLY_TOKEN_SECRET"] = "crash-test-reply-secret-0123"
    env["PYTHONFAULTHANDLER"] = "1"
    crmhub = str(Path(sys.executable).parent / "crmhub")
    proc = subprocess.Popen(
        [crmhub, "-c", str(cfg), "serve", "--port", str(free_port())],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",  # one odd byte must not end the thread that drains the pipe
        env=env,
    )
    assert proc.stdout is not None
    # A thread reads the node's output for as long as it runs: lines before the
    # "serving" one are expected (a restarted node's dispatcher starts with the hub
    # and logs the leases it takes over; reading "the rest" after such a line once
    # hung the test, as the node never exits), and a pipe nobody drains would stop
    # a node that logs a lot. Bounded: a node that never says it serves fails the
    # test with its output and, through faulthandler, where each of its threads is.
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_drain, args=(proc.stdout, lines), daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + START_SECONDS
    while not (seen and seen[-1].startswith("crmhub serving on")):
        try:
            seen.append(lines.get(timeout=max(0.0, deadline - time.monotonic())))
        except queue.Empty:
            proc.send_signal(signal.SIGABRT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            time.sleep(0.5)  # the drain thread takes the rest
            rest = "".join(lines.get() for _ in range(lines.qsize()))
            pytest.fail(f"crmhub serve did not say it serves within {START_SECONDS} s:\n"
                        + "".join(seen) + rest)  # fmt: skip
        if seen[-1] == "":
            proc.wait(10)
            pytest.fail("crmhub serve exited before serving:\n" + "".join(seen))
    return proc


def _drain(stream: Any, lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)
    lines.put("")  # end of output: the node exited


def _wait_for(check: Any, what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def _rows_of(db: Database, recipients: list[str]) -> list[Any]:
    async with db.read() as s:
        conn = await s.connection()
        query = select(outbox_t.c.recipient, outbox_t.c.attempts, outbox_t.c.uncertain)
        return list((await conn.execute(query.where(outbox_t.c.recipient.in_(recipients)))).all())


async def _outbox_left(db: Database) -> tuple[int, int]:
    async with db.read() as s:
        conn = await s.connection()
        left = (
            await conn.execute(
                select(func.count()).where(outbox_t.c.status.in_(("queued", "sending")))
            )
        ).scalar_one()
        uncertain = (
            await conn.execute(select(func.count()).where(outbox_t.c.uncertain))
        ).scalar_one()
    return int(left), int(uncertain)


async def test_killed_twice_every_consenting_recipient_once_but_the_uncertain(
    db_url: str, db: Database, tmp_path: Path
) -> None:
    smtp = SmtpServer()
    smtp.handler = SlowRecorder()
    smtp.start()
    try:
        settings = make_settings(
            db_url,
            server={"public_url": PUBLIC_URL},
            email={
                "mailboxes": [
                    {
                        "name": "support",
                        "address": SUPPORT,
                        "smtp": {"host": "127.0.0.1", "port": smtp.port, "tls": "none"},
                    }
                ],
                "reply_token_secret": "crash-test-reply-secret-0123",
            },
            subscriptions={"token_key": TOKEN_KEY, "unsubscribe_address": "u@example.com"},
        )
        hub = Hub(settings, dispatch=False)
        await hub.start()
        try:
            emails = [f"kunde{n:03d}@example.org" for n in range(PEOPLE)]
            async with hub.db.write() as s:
                store = CustomerStore(s, _system(), "DE")
                ids = [
                    (await store.create(CustomerIn(name=f"Kunde {n}", emails=[e]), None)).id
                    for n, e in enumerate(emails)
                ]
                conn = await s.connection()
                for n in OPTED_OUT:
                    await record_consent(conn, ids[n], "email", "marketing", "opted_out", "test")
                segment = await create_segment(
                    conn, _system(), name="alle", filter_data={}, team_id=None
                )
                parts = TemplateParts(subject="Hallo {{ name }}", text="Text {{ unsubscribe_url }}")
                template = await create_template(
                    conn, name="crash", channel="email", locale="de", parts=parts, created_by=None
                )
                campaign = await create_campaign(
                    conn, _system(), settings,
                    CampaignIn(name="crash", channel="email", segment_id=segment.id,
                               steps=[StepIn(kind="send", template_id=template.id)]),
                )  # fmt: skip
                await set_status(conn, None, campaign, "schedule")
            await start_run(hub.db, settings, campaign)
        finally:
            await hub.stop()
        consenting = {e for n, e in enumerate(emails) if n not in OPTED_OUT}
        cfg = _config(tmp_path, db_url, smtp)

        def received() -> Counter[str]:
            return Counter(r for m in list(smtp.received) for r in m.rcpt_tos)

        for stop_at in (20, 50):
            proc = _serve(cfg)
            _wait_for(lambda n=stop_at: sum(received().values()) >= n, f"{stop_at} mails")
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        proc = _serve(cfg)
        try:
            for _ in range(900):  # the rest, within 90 s
                if not (await _outbox_left(db))[0]:
                    break
                await asyncio.sleep(0.1)
        finally:
            proc.terminate()
            proc.wait(30)
        left, uncertain = await _outbox_left(db)
        got = received()
        duplicates = sum(n - 1 for n in got.values())
        assert left == 0
        assert set(got) == consenting  # everyone who may, nobody who opted out
        assert 1 <= uncertain <= 2 * POOL  # each kill caught sends in flight (SlowRecorder)
        assert duplicates <= 2 * POOL, got
        # Every extra copy is an attempt that was in flight at a kill, on an uncertain row.
        rows = await _rows_of(db, [r for r, n in got.items() if n > 1])
        assert all(row.uncertain and got[row.recipient] <= row.attempts for row in rows), rows
        assert len(rows) == len([n for n in got.values() if n > 1])
    finally:
        smtp.stop()


def _system() -> Any:
    from hub.records.auth import Principal
    from hub.store.models import Role

    return Principal(0, "test", Role.ADMIN, frozenset())
