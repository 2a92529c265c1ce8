"""What the benchmarks ask of the hub: synthetic inbound contacts and screen-pop lookups.

Both refer to seeded customers through `customer_phone(i)` / `customer_email(i)`
and present them the way they arrive in practice (national and international
phone forms, upper-case addresses, display names), so that normalisation is
part of what is measured.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bench.seed import customer_email, customer_phone
from channels.base import Channel, InboundContact

SALES_LINE, SUPPORT_LINE = "+49 30 5550100", "+49 30 5550199"


def phone_forms(e164: str) -> list[str]:
    """How one German mobile number arrives: E.164, national, spaced, 0049 (0) ..."""
    national = "0" + e164[3:]
    return [
        e164,
        national,
        f"{national[:4]} {national[4:]}",
        f"+49 {e164[3:6]} {e164[6:]}",
        f"0049 (0){e164[3:6]}-{e164[6:]}",
    ]


def email_forms(address: str, i: int) -> list[str]:
    local, domain = address.split("@")
    return [address, address.upper(), f"Customer {i} <{local}@{domain.title()}>"]


@dataclass
class Workload:
    contacts: list[InboundContact]
    known_customers: list[int]  # customer ids that received contacts (lookup targets)
    resent: int


def make_workload(n: int, customers: int, history_every: int, seed: int = 7) -> Workload:
    """80 % known senders (various formats), 20 % unknown (new leads), ~5 % provider re-sends."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    run = uuid.uuid4().hex[:8]
    fresh: list[InboundContact] = []
    known: list[int] = []
    originals = max(1, round(n / 1.05))
    for k in range(originals):
        at = now + timedelta(microseconds=k)
        is_sms = rng.random() < 0.5
        if rng.random() < 0.8:
            cid = rng.randint(1, customers)
            known.append(cid)
            sender = (
                rng.choice(phone_forms(customer_phone(cid)))
                if is_sms
                else rng.choice(email_forms(customer_email(cid), cid))
            )
        else:
            cid = 0
            u = rng.randint(0, 10**8 - 1)
            sender = f"+49160{u:08d}" if is_sms else f"new{u}@newcomer{u % 13}.example"
        if is_sms:
            fresh.append(
                InboundContact(
                    Channel.SMS,
                    sender,
                    recipient=SALES_LINE if k % 4 == 0 else SUPPORT_LINE,
                    text=f"Hallo, bitte um Rückruf wegen Auftrag {k}.",
                    provider_id=f"SM{run}{k:010d}",
                    occurred_at=at,
                    metadata={"NumMedia": "0", "AccountSid": "ACbench"},
                )
            )
        else:
            # A reply to an old seeded thread where the customer has one (threading by refs).
            refs: tuple[str, ...] = ()
            if (
                cid
                and history_every
                and cid % history_every == 0
                and (cid // history_every) % 2 == 0
            ):
                refs = (f"<seed-{cid // history_every}-1@example.com>",)
            fresh.append(
                InboundContact(
                    Channel.EMAIL,
                    sender,
                    recipient="Sales <sales@example.com>" if k % 4 == 0 else "support@example.com",
                    subject=f"Re: Order {k}" if refs else f"Order {k}",
                    text="Sehr geehrte Damen und Herren,\n"
                    + "bitte senden Sie mir ein Angebot. " * 8,
                    provider_id=f"<{run}.{k}@mail.example>",
                    thread_refs=refs,
                    occurred_at=at,
                    metadata={"message_id": f"<{run}.{k}@mail.example>"},
                )
            )
    # Provider retries: the same contact again, a little later in the stream
    # (some land in the same batch as the original, most in a later one).
    out = list(fresh)
    resent = n - originals
    for _ in range(resent):
        src = rng.randrange(originals)
        pos = min(len(out), src + rng.randint(1, 3000))
        out.insert(pos, fresh[src])
    return Workload(out, known, resent)


def lookup_targets(
    n: int, customers: int, known: list[int], seed: int = 11
) -> list[tuple[str, str]]:
    """(kind, raw value) pairs as a screen pop would pass them to the lookup.

    Half are callers who just wrote (fresh history), half anyone; phone and
    email alike. Values are raw: any of `phone_forms` (national "0151 …",
    "+49 151 …", "0049 (0)151-…"), addresses as given or upper-cased, so the
    lookup's own normalisation is timed too.
    """
    rng = random.Random(seed)
    out: list[tuple[str, str]] = []
    for i in range(n):
        cid = rng.choice(known) if known and i % 2 == 0 else rng.randint(1, customers)
        if rng.random() < 0.5:
            out.append(("phone", rng.choice(phone_forms(customer_phone(cid)))))
        else:
            address = customer_email(cid)
            out.append(("email", address.upper() if rng.random() < 0.5 else address))
    return out
