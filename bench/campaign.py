"""An email (or SMS) campaign through `crmhub serve` into a local SMTP sink (or a
counting fake of Twilio's Messages API), against a bare aiosmtplib loop (or a bare
loop of the twilio library) with the same number of connections (requests in
flight) into the same sink.

1. A fresh database (SQLite, or PostgreSQL with `--db`) seeded with `--recipients`
   customers, each with an email address (bench/seed.py); a shared segment of all
   of them, a newsletter template (subject, HTML and text, the unsubscribe link),
   and an email campaign (a draft).
2. `crmhub serve` in a child process (scheduler on, dispatcher on, `--connections`
   SMTP connections, no rate limit) on that database; the counting sink
   (bench/smtp_sink.py) in another.
3. "start": the campaign is scheduled (`now`). The scheduler fires it, expansion
   queues the audience in chunks, the dispatcher sends. Measured: the time from
   start to the first message in the sink, from start to the last, the rate, and
   the child's peak RSS (VmHWM).
4. The bare loop: the same number of messages, built the same way (multipart text
   + HTML, List-Unsubscribe headers), over the same number of aiosmtplib
   connections, into the same sink; its rate.

`--channel sms`: an SMS campaign (body template, `sms.max_in_flight` =
`--connections`, no quiet hours) into bench/twilio_sink.py, and the bare loop is
`client.messages.create_async` of the twilio library with the same requests in
flight. `--measure N` times only the first N messages on both sides (a full
1,000,000 run would take hours); first message and peak RSS are then up to the
N-th message.

Goals (issue 12): crmhub >= 0.8x the bare loop; peak RSS < 300 MB and the first
message < 2 s after start at 1,000,000 recipients.

    .venv/bin/python bench/campaign.py                       # 100,000 recipients, SQLite
    .venv/bin/python bench/campaign.py --recipients 1000000
    .venv/bin/python bench/campaign.py --db postgresql+asyncpg://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/campaign.py --channel sms --recipients 100000
    .venv/bin/python bench/campaign.py --recipients 1000000 --measure 20000

A benchmark, not a test: it asserts nothing about the figures (it does check that
the sink got every message).
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

if not __package__:  # run as `python bench/campaign.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.seed import customer_email, customer_phone, log, seed
from bench.sms_webhook import free_port
from bench.smtp_sink import HOST, Sink
from bench.target import prepare_target
from bench.twilio_sink import ACCOUNT_SID as TWILIO_ACCOUNT
from bench.twilio_sink import TwilioSink
from hub.store.migrate import upgrade

TOKEN_KEY = "bench-campaign-key-0123456789"
FROM = "news@example.com"
SUBJECT = "Neuigkeiten für {{ name }}"
HTML = (
    "<h1>Hallo {{ name }}</h1><p>Unsere Neuigkeiten im Dezember: "
    + "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 8
    + "</p><p><a href='{{ unsubscribe_url }}'>Abmelden</a></p>"
)
TEXT = (
    "Hallo {{ name }},\n\nUnsere Neuigkeiten im Dezember: "
    + "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 8
    + "\n\nAbmelden: {{ unsubscribe_url }}\n"
)
SMS = "Hallo {{ name }}, heute 20 % auf alles im Laden. Abmelden: STOP"
SMS_FROM = "+4930555000"
SMS_TOKEN = "bench-campaign-twilio-token"


async def prepare(url: str, channel: str) -> int:
    """Segment, template and campaign (a draft) as the system; the campaign id."""
    from hub.campaigns.schemas import CampaignIn, StepIn
    from hub.campaigns.store import create_campaign
    from hub.config import load_settings
    from hub.records.auth import Principal
    from hub.segments.store import create_segment
    from hub.store.db import Database
    from hub.store.models import Role
    from hub.templating.render import TemplateParts
    from hub.templating.store import create_template

    settings = load_settings(
        os.devnull,
        database={"url": url},
        server={"public_url": "https://crm.example.com"},
        subscriptions={"token_key": TOKEN_KEY, "unsubscribe_address": "u@example.com"},
    )
    system = Principal(0, "bench", Role.ADMIN, frozenset())
    db = Database(settings.database)
    try:
        async with db.write() as s:
            conn = await s.connection()
            segment = await create_segment(conn, system, name="all", filter_data={}, team_id=None)
            parts = (
                TemplateParts(subject=SUBJECT, html=HTML, text=TEXT)
                if channel == "email"
                else TemplateParts(body=SMS)
            )
            template = await create_template(
                conn, name="bench-news", channel=channel, locale="de", parts=parts,
                created_by=None,
            )  # fmt: skip
            return await create_campaign(
                conn, system, settings,
                CampaignIn(name="bench", channel=channel, segment_id=segment.id,
                           steps=[StepIn(kind="send", template_id=template.id)]),
            )  # fmt: skip
    finally:
        await db.close()


async def schedule(url: str, campaign_id: int) -> None:
    from hub.campaigns.store import set_status
    from hub.config import DatabaseConfig
    from hub.store.db import Database

    db = Database(DatabaseConfig(url=url))
    try:
        async with db.write() as s:
            await set_status(await s.connection(), None, campaign_id, "schedule")
    finally:
        await db.close()


def serve(url: str, port: int, connections: int, tmp: Path, channel: str) -> subprocess.Popen[str]:
    cfg = tmp / "bench-campaign.yaml"
    sms = (
        f"""sms:
  enabled: true
  account_sid: {TWILIO_ACCOUNT}
  from_number: "{SMS_FROM}"
  api_base_url: http://{HOST}:{port}
  rate_per_second: 100000
  max_in_flight: {connections}
"""
        if channel == "sms"
        else ""
    )
    cfg.write_text(
        f"""database:
  url: {url}
server:
  access_log: false
  public_url: https://crm.example.com
email:
  mailboxes:
    - name: news
      address: {FROM}
      smtp: {{host: {HOST}, port: {port}, tls: none, pool_size: {connections},
             rate_per_second: 100000, max_body_chars: 100000}}
subscriptions:
  unsubscribe_address: u@example.com
outbox:
  batch_size: 1000
  poll_seconds: 0.05
campaigns:
  tick_seconds: 0.1
  chunk: 2000
  max_per_week: 100
  quiet_hours: {{}}
"""
        + sms
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMHUB_")}
    env["CRMHUB_SUBSCRIPTIONS__TOKEN_KEY"] = TOKEN_KEY
    env["CRMHUB_EMAIL__REPLY_TOKEN_SECRET"] = "bench-campaign-reply-secret-01"
    env["CRMHUB_SMS__AUTH_TOKEN"] = SMS_TOKEN
    crmhub = str(Path(sys.executable).parent / "crmhub")
    out = tmp / "bench-campaign.log"  # a file, not a pipe: a full pipe would stall the node
    with out.open("w") as log_file:
        proc = subprocess.Popen(
            [crmhub, "-c", str(cfg), "serve", "--port", str(free_port())],
            stdout=log_file, stderr=subprocess.STDOUT, text=True, env=env,
            start_new_session=True,
        )  # fmt: skip
    for _ in range(600):
        if "crmhub serving on" in out.read_text():
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise SystemExit(f"bench: crmhub serve did not start:\n{out.read_text()}")


def start_profile(pid: int, out: str | None) -> subprocess.Popen[bytes] | None:
    """py-spy (raw collapsed stacks, 200 Hz) on the node from the start to the last message."""
    if not out:
        return None
    spy = subprocess.Popen(
        [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid),
         "--format", "raw", "--rate", "200", "--output", out, "--nonblocking",
         *os.environ.get("PYSPY_EXTRA", "").split()],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1)  # attach
    return spy


def memory_now(pid: int) -> str:
    """RSS split as the kernel counts it: anonymous memory (the process's own) and
    file pages (SQLite's mmap of the database file: page cache, shared, reclaimable)."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    anon, file = (int(fields[k].split()[0]) / 1024 for k in ("RssAnon", "RssFile"))
    return f"now {anon:.0f} MB anonymous + {file:.0f} MB file-backed (mmap)"


class MemorySampler:
    """Samples the node's RssAnon and RssFile every `every` seconds (a thread): VmHWM
    says how high RSS went, not whether the node's own memory or SQLite's mmap of
    the file made the peak, nor when."""

    def __init__(self, pid: int, every: float = 0.25) -> None:
        self.pid, self.every = pid, every
        self.peak_anon = self.peak_file = self.peak_total = 0.0
        self.at_peak = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.perf_counter()
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                text = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            fields = dict(line.split(":", 1) for line in text.splitlines())
            anon, file = (int(fields[k].split()[0]) / 1024 for k in ("RssAnon", "RssFile"))
            self.peak_anon, self.peak_file = max(self.peak_anon, anon), max(self.peak_file, file)
            if anon + file > self.peak_total:
                self.peak_total = anon + file
                moment = time.perf_counter() - self._t0
                self.at_peak = f"{anon:.0f} anon + {file:.0f} file at {moment:.1f} s"

    def stop(self) -> str:
        self._stop.set()
        self._thread.join()
        return (
            f"sampled every {self.every:g} s: anonymous at most {self.peak_anon:.0f} MB, "
            f"file-backed at most {self.peak_file:.0f} MB; highest sum {self.at_peak}"
        )


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_count(sink: Sink, n: int, timeout: float) -> float:
    """Poll the sink until it counted `n` messages; the moment it did."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if int(sink.stats()["messages"]) >= n:
            return time.perf_counter()
        time.sleep(0.005 if n == 1 else 0.2)
    raise SystemExit(f"bench: the sink got {sink.stats()['messages']} of {n} in {timeout} s")


def bare_message(i: int) -> EmailMessage:
    msg = EmailMessage()
    msg["Message-ID"] = email.utils.make_msgid(domain="example.com")
    msg["Date"] = email.utils.format_datetime(datetime.now(UTC))
    msg["From"] = FROM
    msg["To"] = customer_email(i)
    msg["Subject"] = f"Neuigkeiten für Kunde {i}"
    url = f"https://crm.example.com/u/token{i}"
    msg["List-Unsubscribe"] = f"<{url}>, <mailto:u@example.com?subject=unsubscribe%20token{i}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    text = TEXT.replace("{{ name }}", f"Kunde {i}").replace("{{ unsubscribe_url }}", url)
    html = HTML.replace("{{ name }}", f"Kunde {i}").replace("{{ unsubscribe_url }}", url)
    msg.set_content(text, charset="utf-8", cte="quoted-printable")
    msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    return msg


async def bare(port: int, n: int, connections: int) -> float:
    """The minimum anyone would write: C connections, each sending its share in turn."""
    import aiosmtplib

    clients = [aiosmtplib.SMTP(hostname=HOST, port=port, use_tls=False, start_tls=False)
               for _ in range(connections)]  # fmt: skip
    for c in clients:
        await c.connect()

    async def worker(k: int) -> None:
        for i in range(k, n, connections):
            await clients[k].send_message(
                bare_message(i), sender=FROM, recipients=[customer_email(i)]
            )

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(connections)))
    elapsed = time.perf_counter() - t0
    for c in clients:
        await c.quit()
    return n / elapsed


async def bare_sms(port: int, n: int, connections: int) -> float:
    """The minimum with the twilio library: C requests in flight, each worker in turn."""
    from twilio.http.async_http_client import AsyncTwilioHttpClient
    from twilio.rest import Client

    http = AsyncTwilioHttpClient()
    client = Client(TWILIO_ACCOUNT, SMS_TOKEN, http_client=http)
    client.api.base_url = f"http://{HOST}:{port}"

    async def worker(k: int) -> None:
        for i in range(k, n, connections):
            body = SMS.replace("{{ name }}", f"Kunde {i}")
            await client.messages.create_async(to=customer_phone(i), from_=SMS_FROM, body=body)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(connections)))
    elapsed = time.perf_counter() - t0
    await http.close()
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", help="database URL (default: a fresh SQLite file)")
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument(
        "--connections",
        type=int,
        default=4,
        help="SMTP connections / Twilio requests in flight, each side",
    )
    parser.add_argument("--channel", choices=("email", "sms"), default="email")
    parser.add_argument(
        "--measure",
        type=int,
        metavar="N",
        help="time only the first N messages (a 1,000,000 run would take hours): "
        "first message, rate and peak RSS up to then",
    )
    parser.add_argument(
        "--latency", type=float, default=0.0, metavar="MS",
        help="the sink answers each message after MS milliseconds (a real relay, "
             "Twilio's API: ~100-300 ms); default 0: at once",
    )  # fmt: skip
    parser.add_argument("--keep", action="store_true")
    parser.add_argument(
        "--seed-cache", metavar="FILE",
        help="SQLite: copy the seeded database from FILE if it exists, else seed and "
             "save it there (the same --recipients each time)",
    )  # fmt: skip
    parser.add_argument("--profile", metavar="FILE", help="py-spy raw profile of crmhub serve")
    args = parser.parse_args()
    target = prepare_target(args.db, args.keep)
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    sink = Sink(args.latency) if args.channel == "email" else TwilioSink(args.latency)
    proc = None
    try:
        seeded = Path(args.seed_cache) if args.seed_cache else None
        here = Path(target.where)
        if seeded is not None and seeded.exists():
            shutil.copyfile(seeded, here)  # A/B runs at a million: seed once
            log(f"copied the seeded database from {seeded}")
        else:
            upgrade(target.url)
            t = time.perf_counter()
            seed(target.url, args.recipients, 0)
            log(f"seeded {args.recipients:,} customers in {time.perf_counter() - t:.0f} s")
            if seeded is not None:
                shutil.copyfile(here, seeded)  # seed() checkpointed: the file is whole
        campaign = asyncio.run(prepare(target.url, args.channel))
        log(f"campaign {campaign} made; starting crmhub serve")
        proc = serve(target.url, sink.port, args.connections, tmp, args.channel)
        log("crmhub serve is up")
        time.sleep(1.0)  # the scheduler's first tick and the pools' connections
        before = int(sink.stats()["messages"])
        spy = start_profile(proc.pid, args.profile)
        sampler = MemorySampler(proc.pid)
        t0 = time.perf_counter()
        asyncio.run(schedule(target.url, campaign))
        measured = min(args.measure or args.recipients, args.recipients)
        first = wait_count(sink, before + 1, 60)
        last = wait_count(sink, before + measured, 4 * 3600)
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes the profile on SIGINT
            spy.wait(60)
        rss = peak_rss_mb(proc.pid)
        split = memory_now(proc.pid)
        sampled = sampler.stop()
        crmhub_rate = measured / (last - t0)
        if measured < args.recipients:
            proc.terminate()  # the rest would only take time
            proc.wait(60)
        log("crmhub done; now the bare loop")
        mark = int(sink.stats()["messages"])
        loop = bare if args.channel == "email" else bare_sms
        bare_rate = asyncio.run(loop(sink.port, measured, args.connections))
        got = int(sink.stats()["messages"]) - mark
        if got != measured:
            raise SystemExit(f"bench: the bare loop delivered {got} of {measured}")
        what = "SMTP connections" if args.channel == "email" else "Twilio requests in flight"
        print(f"database: {target.where}; {args.channel}; {args.recipients:,} recipients; "
              f"{args.connections} {what} each side; "
              f"sink answers after {args.latency:g} ms")  # fmt: skip
        if measured < args.recipients:
            print(f"measured: the first {measured:,} messages on both sides")
        print(f"crmhub: {crmhub_rate:,.0f} messages/s (start to last), first message "
              f"{first - t0:.2f} s after start, peak RSS {rss:.0f} MB ({split})")  # fmt: skip
        print(f"crmhub memory from start to last, {sampled}")
        bare_name = "aiosmtplib" if args.channel == "email" else "twilio client"
        print(f"bare {bare_name} loop: {bare_rate:,.0f} messages/s")
        print(f"ratio crmhub/bare: {crmhub_rate / bare_rate:.2f} (goal >= 0.8)")
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(30)
        sink.stop()
        target.cleanup()


if __name__ == "__main__":
    main()
