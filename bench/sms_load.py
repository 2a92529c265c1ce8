"""The load of bench/sms_webhook.py: signed Twilio inbound-SMS webhooks, posted concurrently.

Runs in its own process, started by bench/sms_webhook.py as `sms_webhook.py
--load`: it builds and signs every request first, sends an uncounted warm-up,
then the measured requests over keep-alive connections, and prints the figures
as one JSON line on stdout. The auth token comes from the environment.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import time
from pathlib import Path
from urllib.parse import urlencode

from bench.stats import pct

TOKEN_ENV = "CRMHUB_SMS__AUTH_TOKEN"
HOST = "127.0.0.1"
PATH = "/webhooks/twilio/sms"
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
BODIES = [
    "Hallo, ich habe eine Frage zu meiner Rechnung.",
    "Wann kommt meine Lieferung?",
    "Bitte rufen Sie mich zurück.",
    "Danke, alles angekommen 👍",
    "Können wir den Termin auf Donnerstag verschieben?",
    "Ok",
    "Ich möchte meine Adresse ändern: Müllerstraße 12, 10115 Berlin.",
    "Ist das Angebot noch gültig?",
]


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process so far (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def make_requests(
    url: str, token: str, n: int, warmup: int, senders: int, seed: int
) -> list[bytes]:
    """n form bodies, each with a unique MessageSid, signed over `url` like Twilio does.

    The warm-up writes from the first `warmup` numbers of the pool (so they are
    known afterwards); the measured requests pick any of the `senders` numbers,
    so most come from known customers and each number's first message makes a lead.
    Each item is b"<X-Twilio-Signature>\\n<urlencoded form>", ready to send.
    """
    from twilio.request_validator import RequestValidator

    validator = RequestValidator(token)
    rng = random.Random(seed)
    pool = [f"+49151{1000000 + i * 7:07d}" for i in range(senders)]
    out = []
    for i in range(n):
        sender = pool[i % senders] if i < warmup else rng.choice(pool)
        sid = "SM" + secrets.token_hex(16)
        params = {
            "ToCountry": "DE",
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "SmsSid": sid,
            "SmsStatus": "received",
            "Body": rng.choice(BODIES),
            "To": f"+4930555010{rng.randrange(10)}",
            "NumSegments": "1",
            "MessageSid": sid,
            "AccountSid": ACCOUNT_SID,
            "From": sender,
            "FromCountry": "DE",
            "ApiVersion": "2010-04-01",
        }
        signature = validator.compute_signature(url, params)
        out.append(signature.encode() + b"\n" + urlencode(params).encode())
    return out


async def drive(url: str, requests: list[bytes], connections: int, deadline: float | None) -> dict:
    """Post `requests` over `connections` keep-alive connections; one in flight per connection."""
    import aiohttp

    latencies: list[float] = []
    statuses: dict[str, int] = {}
    clock = time.perf_counter
    source = iter(requests)
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            for item in source:  # shared iterator: each request is sent once
                if deadline is not None and clock() > deadline:
                    return
                signature, body = item.split(b"\n", 1)
                headers = {
                    "Content-Type": "application/x-www-form-urlencoded",
                    "X-Twilio-Signature": signature.decode(),
                    "User-Agent": "TwilioProxy/1.1",
                }
                t0 = clock()
                try:
                    async with session.post(url, data=body, headers=headers) as resp:
                        await resp.read()
                        status = str(resp.status)
                except Exception as exc:
                    status = type(exc).__name__
                dt = clock() - t0
                statuses[status] = statuses.get(status, 0) + 1
                if status == "200":
                    latencies.append(dt)

        t0 = clock()
        await asyncio.gather(*(worker() for _ in range(connections)))
        seconds = clock() - t0
    latencies.sort()
    sent = sum(statuses.values())
    return {
        "requests": sent,
        "connections": connections,
        "seconds": round(seconds, 3),
        "per_second": round(sent / seconds, 1) if seconds else 0.0,
        "p50_ms": round(pct(latencies, 50) * 1000, 2),
        "p99_ms": round(pct(latencies, 99) * 1000, 2),
        "max_ms": round(latencies[-1] * 1000, 2) if latencies else float("nan"),
        "errors": sent - statuses.get("200", 0),
        "statuses": statuses,
    }


def load_main(args: argparse.Namespace) -> int:
    """The load process: build and sign everything first, warm up, then measure."""
    import gc

    token = os.environ[TOKEN_ENV]
    url = f"http://{HOST}:{args.port}{PATH}"
    total = args.warmup + args.requests
    reqs = make_requests(url, token, total, args.warmup, args.senders, args.seed)
    gc.collect()
    gc.freeze()
    warm = asyncio.run(drive(url, reqs[: args.warmup], args.connections, None))
    cpu0, own0 = cpu_seconds(args.server_pid), time.process_time()
    deadline = time.perf_counter() + args.duration if args.duration else None
    figures = asyncio.run(drive(url, reqs[args.warmup :], args.connections, deadline))
    cpu1, own1 = cpu_seconds(args.server_pid), time.process_time()
    figures["warmup_errors"] = warm["errors"]
    if cpu0 is not None and cpu1 is not None and figures["requests"]:
        figures["server_cpu_us_per_request"] = round((cpu1 - cpu0) / figures["requests"] * 1e6)
        figures["server_cpu_percent"] = round((cpu1 - cpu0) / figures["seconds"] * 100)
    figures["load_cpu_percent"] = round((own1 - own0) / figures["seconds"] * 100)
    print(json.dumps(figures))
    return 0
