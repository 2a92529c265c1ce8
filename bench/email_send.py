"""Outbound email through crmhub's SmtpSender against a bare aiosmtplib loop, same sink.

Issue 4: N messages through `SmtpSender` (channels/email/smtp.py) into a
local SMTP sink, and in the same run a bare aiosmtplib loop with the same
number of connections into the same sink. Goal: crmhub >= 0.8x the bare loop.
A benchmark, not a test: it asserts nothing about the figures.

    .venv/bin/python bench/email_send.py        # 5,000 messages, 4 connections, 3 rounds
    .venv/bin/python bench/email_send.py --messages 20000 --connections 8 --rounds 5
    .venv/bin/python bench/email_send.py --json

Three kinds of process, all on 127.0.0.1 (the machine has 2 cores, so the sink
never shares an event loop or the GIL with the client being measured):

- **Sink** (`--sink`, one process for the whole run): aiosmtpd's SMTP server
  on uvloop (when installed) with a handler that counts each message (and its
  bytes and recipients), discards it and answers 250. Asked over its stdin,
  it reports its counters and its own CPU time, so every round checks that
  the sink received exactly what the client sent and how busy the sink was.
- **Client** (`--client crmhub|bare`, a fresh process per round, uvloop like
  `crmhub serve`): builds N + warm-up `OutboundMessage`s first (not timed):
  an agent's reply with a subject, a ~2 KB German text body (umlauts, so the
  quoted-printable encoding has work to do) and the headers the outbox passes
  on: Message-ID, In-Reply-To, References, Reply-To (the reply-token address).
  Then C asyncio tasks, task i taking messages i, i+C, i+2C, ... one at a time.
  The warm-up (default 50 per connection) opens every connection and is not
  counted; then the measured N. Latency is per message, from before the MIME
  is built to the server's final 250 (or the result) being back.

  * **crmhub**: `SmtpSender(SmtpConfig(pool_size=C, tls="none"))`; each task
    awaits `sender.send(message)` and checks the result is SENT -- the call
    the outbox dispatcher makes (hub/outbox/queue.py `Sender`): length check,
    `build_message` (EmailMessage, Message-ID taken from the headers, Date,
    From, To, Subject, the other headers copied,
    `set_content(text, charset="utf-8", cte="quoted-printable")`),
    a pool slot out of the LIFO queue, `send_message(msg, sender, [recipient])`
    on that slot's persistent connection, outcome -> DeliveryResult.
  * **bare**: C `aiosmtplib.SMTP` connections opened once, task i always uses
    connection i; per message it builds the same EmailMessage by hand (same
    headers in the same order, same `set_content` call) and awaits
    `smtp.send_message(msg, sender=FROM, recipients=[to])`; nothing else --
    the minimum anyone would write. Before the rounds, this file checks that
    both sides produce byte-identical MIME for the same input (Date aside).

  Both: four round trips per message (MAIL, RCPT, DATA, the data; aiosmtplib
  does not pipeline), the workload frozen for the GC after the warm-up.

Rounds alternate crmhub, bare, crmhub, bare, ...; the report gives each side's
median messages/s over its rounds, the median of the rounds' p50/p99 latency,
client CPU over the measured phase, sink CPU per message (and how much of a
core that is at the measured rate: near 100 % would mean the sink, not the
client, set the pace), and the ratio crmhub/bare of the medians. The ratio
of client CPU per message (bare/crmhub) is printed too: it moves less than
messages/s when other work shares the machine.

The sink is started and terminated by this process (also on errors, Ctrl-C
and SIGTERM); nothing is written to disk. No credentials: the sink takes any
mail without AUTH, over plain TCP on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import gc
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

if not __package__:  # run as `python bench/email_send.py`: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.smtp_sink import HOST, Sink, install_uvloop, sink_main
from bench.stats import pct

FROM = "support@crm.example"
DOMAIN = "crm.example"
EHLO_NAME = "bench.crm.example"
GOAL = 0.8

PARAGRAPHS = [
    "vielen Dank für Ihre Nachricht. Wir haben Ihre Anfrage zur Rechnung geprüft und "
    "festgestellt, dass die Gutschrift über 49,90 € bereits am Dienstag veranlasst wurde.",
    "Die Lieferung an die neue Adresse (Müllerstraße 12, 10115 Berlin) ist für "
    "Donnerstag zwischen 10 und 14 Uhr geplant; Sie erhalten am Vortag eine SMS.",
    "Falls Sie den Termin verschieben möchten, antworten Sie einfach auf diese E-Mail "
    "oder rufen Sie uns unter +49 30 5550100 an, Montag bis Freitag von 8 bis 18 Uhr.",
    "Ihre Kundennummer lautet K-{n:07d}; bitte geben Sie sie bei Rückfragen an, damit "
    "wir Ihr Anliegen schneller zuordnen können.",
    "Zu Ihrer zweiten Frage: Das Angebot ist noch bis Ende des Monats gültig, und die "
    "Verlängerung der Garantie um zwölf Monate ist darin bereits enthalten.",
    "Wir entschuldigen uns für die Unannehmlichkeiten und die längere Wartezeit in der "
    "vergangenen Woche. Unser Team war wegen der Umstellung auf das neue Lager knapp besetzt.",
    "Den Rabatt von 10 % haben wir auf der Rechnung vom 3. November nachträglich "
    "berücksichtigt; die korrigierte Rechnung finden Sie ab morgen in Ihrem Kundenkonto "
    "unter „Meine Bestellungen“.",
    "Sollte die Sendung bis Freitag nicht bei Ihnen sein, geben Sie uns bitte kurz "
    "Bescheid. Wir veranlassen dann umgehend eine Ersatzlieferung, selbstverständlich "
    "ohne zusätzliche Kosten für Sie.",
]
SIGNATURE = (
    "\n\nMit freundlichen Grüßen\nJana Schröder\nKundenservice\n\n-- \n"
    "CRM Example GmbH · Friedrichstraße 123 · 10117 Berlin\n"
    "Telefon +49 30 5550100 · support@crm.example · https://crm.example/hilfe\n"
    "Geschäftsführung: Max Mustermann · Amtsgericht Charlottenburg HRB 123456 B\n"
)
# The customer's message, quoted below the answer as mail clients do.
QUOTED = (
    "\nAm 24.11.2026 um 09:12 schrieb Kunde K-{n:07d}:\n"
    "> Sehr geehrte Damen und Herren,\n>\n"
    "> auf meiner letzten Rechnung wurde der Rabatt nicht berücksichtigt, und die\n"
    "> Lieferung ist noch nicht angekommen. Bitte prüfen Sie das und melden Sie\n"
    "> sich bei mir. Außerdem ziehe ich nächste Woche um und bitte um Änderung\n"
    "> der Lieferadresse.\n>\n> Viele Grüße\n"
)
SUBJECTS = [
    "Re: Frage zu meiner Rechnung",
    "Re: Wann kommt meine Lieferung?",
    "Re: Adressänderung",
    "Re: Termin verschieben",
]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- the workload -------------------------------------------------------------------------------


def make_messages(n: int, seed: int) -> list[Any]:
    """n agent replies as the outbox hands them to the sender (`OutboundMessage`s)."""
    from channels.base import Channel, OutboundMessage

    rnd = random.Random(seed)
    out = []
    for i in range(n):
        customer = rnd.randrange(1_000_000)
        paras = PARAGRAPHS[1:]
        rnd.shuffle(paras)
        paras.insert(0, PARAGRAPHS[0])  # the thanks first, the rest in any order
        body = "Guten Tag,\n\n" + "\n\n".join(p.format(n=customer) for p in paras)
        body += SIGNATURE + QUOTED.format(n=customer)
        token = rnd.getrandbits(80).to_bytes(10, "big").hex()
        theirs = f"<{rnd.getrandbits(64):016x}.{i}@mail.customer{customer % 97}.example>"
        out.append(
            OutboundMessage(
                channel=Channel.EMAIL,
                recipient=f"kunde{customer}@customer{customer % 97}.example",
                text=body,
                subject=rnd.choice(SUBJECTS),
                headers={
                    "Message-ID": f"<out.{i}.{token}@{DOMAIN}>",
                    "In-Reply-To": theirs,
                    "References": theirs,
                    "Reply-To": f"reply+{token}@{DOMAIN}",
                },
            )
        )
    return out


def build_bare(m: Any) -> EmailMessage:
    """The bare side's MIME: what anyone would write by hand for the same reply."""
    msg = EmailMessage()
    h = m.headers
    msg["Message-ID"] = h["Message-ID"]
    msg["Date"] = email.utils.format_datetime(datetime.now(UTC))
    msg["From"] = FROM
    msg["To"] = m.recipient
    msg["Subject"] = m.subject
    msg["In-Reply-To"] = h["In-Reply-To"]
    msg["References"] = h["References"]
    msg["Reply-To"] = h["Reply-To"]
    msg.set_content(m.text, charset="utf-8", cte="quoted-printable")
    return msg


def smtp_config(port: int, connections: int) -> Any:
    from channels.email.smtp_config import SmtpConfig

    return SmtpConfig(
        host=HOST,
        port=port,
        tls="none",
        pool_size=connections,
        from_address=FROM,
        domain=DOMAIN,
        local_hostname=EHLO_NAME,
        timeout=30.0,
    )


def check_same_mime() -> int:
    """Both sides must put the same bytes on the wire for the same input (Date aside)."""
    from channels.email.smtp import SmtpSender

    sender = SmtpSender(smtp_config(25, 1))
    sizes = set()
    for m in make_messages(20, seed=99):
        a, b = sender.build_message(m), build_bare(m)
        del a["Date"], b["Date"]
        if a.as_bytes() != b.as_bytes():
            raise SystemExit("bench: crmhub and bare build different MIME for the same message")
        sizes.add(len(a.as_bytes()))
    return round(statistics.mean(sizes))


# --- the client (a fresh process per round) -----------------------------------------------------


async def drive(
    messages: Sequence[Any], tasks: int, send: Callable[[int, Any], Awaitable[bool]]
) -> tuple[list[float], int]:
    """`tasks` concurrent tasks, task i sending messages i, i+tasks, ...; latencies, failures."""
    latencies: list[float] = []
    failed = 0

    async def worker(i: int) -> None:
        nonlocal failed
        clock = time.perf_counter
        for m in messages[i::tasks]:
            t0 = clock()
            ok = await send(i, m)
            latencies.append(clock() - t0)
            if not ok:
                failed += 1

    await asyncio.gather(*(worker(i) for i in range(tasks)))
    return latencies, failed


async def client_run(args: argparse.Namespace, loop_name: str) -> dict[str, Any]:
    import aiosmtplib

    from channels.base import DeliveryState
    from channels.email.smtp import SmtpSender

    c = args.connections
    warmup = make_messages(args.warmup * c, seed=args.seed + 1)
    measured = make_messages(args.messages, seed=args.seed)
    close: Callable[[], Awaitable[Any]]
    send: Callable[[int, Any], Awaitable[bool]]
    if args.client == "crmhub":
        sender = SmtpSender(smtp_config(args.port, c))

        async def send(i: int, m: Any) -> bool:
            return (await sender.send(m)).state is DeliveryState.SENT

        close = sender.close

        def opened() -> int:
            return sender.pool.connections_opened
    else:
        conns = [
            aiosmtplib.SMTP(
                hostname=HOST, port=args.port, use_tls=False, start_tls=False,
                local_hostname=EHLO_NAME, timeout=30.0,
            )
            for _ in range(c)
        ]  # fmt: skip
        for smtp in conns:
            await smtp.connect()

        async def send(i: int, m: Any) -> bool:
            msg = build_bare(m)
            await conns[i].send_message(msg, sender=FROM, recipients=[m.recipient])
            return True

        async def close() -> None:
            for smtp in conns:
                await smtp.quit()

        def opened() -> int:
            return len(conns)

    _, warm_failed = await drive(warmup, c, send)
    gc.collect()
    gc.freeze()  # the prebuilt workload is not the collector's business
    cpu0, t0 = time.process_time(), time.perf_counter()
    latencies, failed = await drive(measured, c, send)
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    connections = opened()
    await close()
    latencies.sort()
    return {
        "side": args.client,
        "loop": loop_name,
        "messages": len(latencies),
        "warmup": len(warmup),
        "connections": c,
        "connections_opened": connections,
        "failed": failed + warm_failed,
        "seconds": seconds,
        "per_second": len(latencies) / seconds,
        "p50_ms": pct(latencies, 50) * 1000,
        "p99_ms": pct(latencies, 99) * 1000,
        "max_ms": latencies[-1] * 1000,
        "client_cpu_percent": 100 * cpu / seconds,
        "client_cpu_us_per_message": 1e6 * cpu / len(latencies),
    }


def client_main(args: argparse.Namespace) -> int:
    loop_name = install_uvloop()
    result = asyncio.run(client_run(args, loop_name))
    print(json.dumps(result), flush=True)
    return 0


# --- the orchestrator ---------------------------------------------------------------------------


def run_round(sink: Sink, side: str, args: argparse.Namespace) -> dict[str, Any]:
    argv = [
        sys.executable, str(Path(__file__).resolve()), "--client", side, "--port", str(sink.port),
        "--messages", str(args.messages), "--connections", str(args.connections),
        "--warmup", str(args.warmup), "--seed", str(args.seed),
    ]  # fmt: skip
    before = sink.stats()
    proc = subprocess.run(argv, stdout=subprocess.PIPE, timeout=1800, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"bench: {side} client exited with {proc.returncode}")
    result: dict[str, Any] = json.loads(proc.stdout)
    after = sink.stats()
    got = after["messages"] - before["messages"]
    sink_cpu = after["cpu"] - before["cpu"]
    sink_us = 1e6 * sink_cpu / max(got, 1)
    result.update(
        sink_received=got,
        sink_lost=result["messages"] + result["warmup"] - got,
        sink_bytes_per_message=(after["bytes"] - before["bytes"]) / max(got, 1),
        sink_connections=after["connections"] - before["connections"],
        sink_cpu_us_per_message=sink_us,
        # sink CPU per message x the measured rate: the share of a core the sink used
        sink_busy_percent=sink_us * result["per_second"] / 1e4,
    )
    log(
        f"{side:<7} {result['per_second']:,.0f} msg/s  p50 {result['p50_ms']:.2f} ms"
        f"  p99 {result['p99_ms']:.2f} ms  client cpu {result['client_cpu_percent']:.0f} %"
        f"  sink {sink_us:.0f} us/msg ({result['sink_busy_percent']:.0f} %)"
        f"  sink got {got:,}, lost {result['sink_lost']}, failed {result['failed']}"
    )
    return result


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    def med(key: str) -> float:
        return float(statistics.median(r[key] for r in rounds))

    return {
        "per_second": med("per_second"),
        "rounds_per_second": [round(r["per_second"]) for r in rounds],
        "p50_ms": med("p50_ms"),
        "p99_ms": med("p99_ms"),
        "client_cpu_percent": med("client_cpu_percent"),
        "client_cpu_us_per_message": med("client_cpu_us_per_message"),
        "sink_cpu_us_per_message": med("sink_cpu_us_per_message"),
        "sink_busy_percent": med("sink_busy_percent"),
        "sink_bytes_per_message": med("sink_bytes_per_message"),
        "sent": sum(r["messages"] + r["warmup"] for r in rounds),
        "sink_received": sum(r["sink_received"] for r in rounds),
        "sink_lost": sum(r["sink_lost"] for r in rounds),
        "failed": sum(r["failed"] for r in rounds),
        "connections_opened": max(r["connections_opened"] for r in rounds),
        "loop": rounds[0]["loop"],
    }


def report(res: dict[str, Any]) -> str:
    a = res["args"]
    lines = [
        f"email send  {a['messages']:,} messages x {a['rounds']} rounds per side (interleaved),"
        f" {a['connections']} connections, +{a['warmup']}/connection warm-up,"
        f" ~{res['mime_bytes']:,} B per mail",
        f"  sink: aiosmtpd on {res['sink_loop']}, own process; clients on"
        f" {res['crmhub']['loop']}, a fresh process per round; {res['cpus']} CPUs,"
        f" load average {res['loadavg'][0]:.1f} before, {res['loadavg'][1]:.1f} after",
    ]
    for name, label in (("crmhub", "crmhub SmtpSender"), ("bare", "bare aiosmtplib")):
        r = res[name]
        rounds = " / ".join(f"{x:,}" for x in r["rounds_per_second"])
        lines += [
            f"{label:<18} {r['per_second']:,.0f} msg/s  (rounds {rounds})"
            f"   p50 {r['p50_ms']:.2f} ms   p99 {r['p99_ms']:.2f} ms",
            f"{'':<18} client {r['client_cpu_us_per_message']:.0f} us CPU/msg"
            f" ({r['client_cpu_percent']:.0f} % of a core);"
            f" sink {r['sink_cpu_us_per_message']:.0f} us/msg ({r['sink_busy_percent']:.0f} %);"
            f" sink got {r['sink_received']:,} of {r['sent']:,} sent"
            f" ({r['sink_bytes_per_message']:,.0f} B each), lost {r['sink_lost']},"
            f" failed {r['failed']}",
        ]
    met = res["ratio"] >= GOAL
    lines += [
        f"ratio crmhub/bare  {res['ratio']:.2f}x  (goal >= {GOAL}x: {'met' if met else 'NOT met'})",
        f"  client CPU per message, bare/crmhub: {res['cpu_ratio']:.2f}x"
        " (steadier than msg/s when other work shares the machine)",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--messages", type=int, default=5_000, help="measured messages per round")
    p.add_argument("--connections", type=int, default=4, help="connections = concurrent tasks")
    p.add_argument("--rounds", type=int, default=3, help="rounds per side, interleaved")
    p.add_argument("--warmup", type=int, default=50, help="uncounted messages per connection")
    p.add_argument("--seed", type=int, default=7, help="random seed of the workload")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    # internal modes: this same file is the sink and the client processes
    p.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--client", choices=("crmhub", "bare"), help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if min(args.messages, args.connections, args.rounds, args.warmup) < 1:
        p.error("counts must be positive")
    if args.connections > 100:
        p.error("--connections: SmtpConfig.pool_size allows at most 100")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.sink:
        return sink_main()  # the old internal mode, kept for scripts
    if args.client:
        return client_main(args)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    load_before = os.getloadavg()[0]
    mime_bytes = check_same_mime()
    sink = Sink()
    try:
        log(f"sink (pid {sink.proc.pid}, aiosmtpd on {sink.loop}) on port {sink.port}")
        rounds: dict[str, list[dict[str, Any]]] = {"crmhub": [], "bare": []}
        for _ in range(args.rounds):
            for side in ("crmhub", "bare"):
                rounds[side].append(run_round(sink, side, args))
        crmhub, bare = summarize(rounds["crmhub"]), summarize(rounds["bare"])
        results = {
            "args": {k: getattr(args, k) for k in ("messages", "connections", "rounds", "warmup")},
            "cpus": os.cpu_count(),
            # the bench itself keeps ~1.2 cores busy; clearly more means other work ran too
            "loadavg": [load_before, os.getloadavg()[0]],
            "sink_loop": sink.loop,
            "mime_bytes": mime_bytes,
            "crmhub": crmhub,
            "bare": bare,
            "ratio": round(crmhub["per_second"] / bare["per_second"], 3),
            "cpu_ratio": round(
                bare["client_cpu_us_per_message"] / crmhub["client_cpu_us_per_message"], 3
            ),
            "rounds": rounds,
        }
        print(json.dumps(results, indent=2) if args.json else report(results))
        return 0
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        sink.stop()


if __name__ == "__main__":
    sys.exit(main())
