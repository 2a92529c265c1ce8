"""An email campaign through `crmhub serve` into a local SMTP sink, against a bare loop.

Issue 12 part C. In one run:

1. a new SQLite database, migrated, seeded with N customers (bench/seed.py, one
   email address each; seeded by a child so no seeder memory is counted);
2. the SMTP sink of bench/smtp_sink.py (its own process, counts and discards);
3. `crmhub serve` with one mailbox whose pool has C connections into the sink;
4. a child that creates segment "alle", a template and a one-step campaign
   through the library calls the API uses, and starts it (`start_run`: the
   expansion into outbox rows). The clock starts when this child is spawned;
5. the sink is polled until it has N messages: time to the first message,
   messages/s from the first to the last, and `crmhub serve`'s peak RSS
   (VmHWM from /proc, read before it is stopped);
6. in the same run, a bare aiosmtplib loop: C connections opened once, each
   task sending its share of N messages of the same size, into the same sink.

    flock /tmp/bench.lock .venv/bin/python bench/campaign.py --recipients 100000
    flock /tmp/bench.lock .venv/bin/python bench/campaign.py --recipients 1000000 --no-bare

A benchmark, not a test: it asserts nothing about the figures. The SMS half
(100,000 SMS against the Twilio fake) is not built yet.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

if not __package__:  # run as `python bench/campaign.py`: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.smtp_sink import HOST, Sink

SENDER = "news@crm.example"
TOKEN_KEY = "bench-campaign-token-key-0123456789abcdef"
REPLY_SECRET = "bench-campaign-reply-secret-0123"
TEXT = (
    "Hallo {{ name }},\n\nunser Newsletter für Dezember: neue Tarife, längere Garantie, "
    "und ein Rabatt von 10 % auf alles bis Monatsende.\n\n"
    + "Mehr dazu auf crm.example. " * 20
    + "\n\nAbmelden: {{ unsubscribe_url }}\n"
)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def write_config(path: Path, url: str, port: int, connections: int) -> None:
    path.write_text(
        f"""database:
  url: {url}
server:
  access_log: false
  public_url: https://crm.example
email:
  mailboxes:
    - name: news
      address: {SENDER}
      smtp:
        {{host: {HOST}, port: {port}, tls: none, pool_size: {connections}, rate_per_second: 100000}}
subscriptions:
  unsubscribe_address: unsubscribe@crm.example
outbox:
  poll_seconds: 0.05
  batch_size: 1000
campaigns:
  scheduler: false
""",
        encoding="utf-8",
    )


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMHUB_")}
    env["CRMHUB_SUBSCRIPTIONS__TOKEN_KEY"] = TOKEN_KEY
    env["CRMHUB_EMAIL__REPLY_TOKEN_SECRET"] = REPLY_SECRET
    return env


async def start_campaign(cfg: str) -> None:
    """The child's part: create and start the campaign as the API would."""
    from hub.campaigns.runs import start_run
    from hub.campaigns.schemas import CampaignIn, StepIn
    from hub.campaigns.store import create_campaign, set_status
    from hub.config import load_settings
    from hub.records.auth import Principal
    from hub.segments.store import create_segment
    from hub.store.db import Database
    from hub.store.models import Role
    from hub.templating.render import TemplateParts
    from hub.templating.store import create_template

    settings = load_settings(cfg)
    system = Principal(0, "bench", Role.ADMIN, frozenset())
    db = Database(settings.database)
    try:
        async with db.write() as s:
            conn = await s.connection()
            segment = await create_segment(conn, system, name="alle", filter_data={}, team_id=None)
            parts = TemplateParts(subject="Neuigkeiten für {{ name }}", text=TEXT)
            template = await create_template(
                conn, name="bench", channel="email", locale="de", parts=parts, created_by=None
            )
            campaign = await create_campaign(
                conn, system, settings,
                CampaignIn(name="bench", channel="email", segment_id=segment.id,
                           steps=[StepIn(kind="send", template_id=template.id)]),
            )  # fmt: skip
            await set_status(conn, None, campaign, "schedule")
        await start_run(db, settings, campaign)
    finally:
        await db.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_crmhub(cfg: Path, sink: Sink, n: int, timeout: float) -> dict[str, float]:
    crmhub = str(Path(sys.executable).parent / "crmhub")
    env = child_env()
    serve = subprocess.Popen(
        [crmhub, "-c", str(cfg), "serve", "--port", str(free_port())],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    try:
        assert serve.stdout is not None
        line = serve.stdout.readline()
        if not line.startswith("crmhub serving on"):
            raise SystemExit(f"bench: crmhub serve did not start: {line}{serve.stdout.read()}")
        base = int(sink.stats()["messages"])
        t0 = time.perf_counter()
        starter = subprocess.Popen([sys.executable, __file__, "--start", str(cfg)], env=env)
        first = last = 0.0
        got = 0
        next_log = t0 + 10
        while got < n:
            if time.perf_counter() - t0 > timeout:
                raise SystemExit(f"bench: only {got:,} of {n:,} messages after {timeout:.0f} s")
            got = int(sink.stats()["messages"]) - base
            now = time.perf_counter()
            if got and not first:
                first = now
            if now > next_log:
                log(f"{got:,} / {n:,} in the sink")
                next_log = now + 10
            last = now
            time.sleep(0.02)
        if starter.wait() != 0:
            raise SystemExit("bench: starting the campaign failed")
        rss = peak_rss_mb(serve.pid)
    finally:
        serve.terminate()
        serve.wait(30)
    return {
        "first_s": first - t0,
        "total_s": last - t0,
        "rate": (n - 1) / max(last - first, 1e-9),
        "peak_rss_mb": rss,
    }


async def bare_loop(port: int, n: int, connections: int) -> float:
    """The minimum anyone would write: C connections, each sending its share."""
    import aiosmtplib

    body = TEXT.replace("{{ name }}", "Kunde").replace("{{ unsubscribe_url }}", "https://x")
    clients = []
    for _ in range(connections):
        smtp = aiosmtplib.SMTP(hostname=HOST, port=port, use_tls=False, start_tls=False)
        await smtp.connect()
        clients.append(smtp)

    async def worker(i: int) -> None:
        for k in range(i, n, connections):
            msg = EmailMessage()
            msg["From"] = SENDER
            msg["To"] = f"c{k}@example{k % 97}.com"
            msg["Subject"] = "Neuigkeiten für Kunde"
            msg["Message-ID"] = f"<bare.{k}@crm.example>"
            msg["List-Unsubscribe"] = "<https://x>"
            msg.set_content(body, charset="utf-8", cte="quoted-printable")
            await clients[i].send_message(msg, sender=SENDER, recipients=[msg["To"]])

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(connections)))
    elapsed = time.perf_counter() - t0
    for smtp in clients:
        await smtp.quit()
    return n / elapsed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--recipients", type=int, default=100_000)
    p.add_argument("--connections", type=int, default=4, help="SMTP connections (both sides)")
    p.add_argument("--timeout", type=float, default=3600.0, help="give up after (s)")
    p.add_argument("--no-bare", action="store_true", help="skip the bare aiosmtplib loop")
    p.add_argument("--start", metavar="CONFIG", help=argparse.SUPPRESS)  # the child's part
    args = p.parse_args(argv)
    if args.start:
        asyncio.run(start_campaign(args.start))
        return 0
    from hub.store.migrate import upgrade

    tmp = Path(tempfile.mkdtemp(prefix="crmhub-bench-campaign-"))
    sink: Sink | None = None
    try:
        url = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
        upgrade(url)
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c",
             f"import sys; sys.path.insert(0, {str(Path(__file__).parent.parent)!r}); "
             f"from bench.seed import seed; seed({url!r}, {args.recipients}, 0)"],
            check=True,
        )  # fmt: skip
        log(f"seeded {args.recipients:,} customers in {time.perf_counter() - t0:.1f} s")
        sink = Sink()
        cfg = tmp / "bench.yaml"
        write_config(cfg, url, sink.port, args.connections)
        r = run_crmhub(cfg, sink, args.recipients, args.timeout)
        print(
            f"crmhub campaign: {args.recipients:,} emails, {args.connections} connections: "
            f"first message {r['first_s']:.2f} s after start, all in {r['total_s']:.1f} s, "
            f"{r['rate']:,.0f} msg/s (first to last), peak RSS {r['peak_rss_mb']:.0f} MB"
        )
        if not args.no_bare:
            rate = asyncio.run(bare_loop(sink.port, args.recipients, args.connections))
            print(
                f"bare aiosmtplib: {rate:,.0f} msg/s; crmhub/bare = {r['rate'] / rate:.2f} "
                f"(goal >= 0.8)"
            )
    finally:
        if sink is not None:
            sink.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
