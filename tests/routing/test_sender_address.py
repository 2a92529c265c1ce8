"""`sender_address` answers plain From values without parseaddr, with parseaddr's answer."""

from __future__ import annotations

import random
from email.utils import parseaddr

import pytest

from routing.mail_rules import _PLAIN_FROM, sender_address


def parsed(raw: str) -> str:
    """The rule as it was: parseaddr for every value."""
    return parseaddr(raw)[1].strip().lower() or raw.strip().lower()


TRICKY = [
    "alice@example.org",
    "ALICE@EXAMPLE.ORG",
    "  Alice@Example.org ",
    "Jane Doe <J.Doe+x@Example.ORG>",
    "Jane  Doe <jane@example.org>",
    "Jane <jane@example.org",
    "jane@example.org>",
    "<jane@example.org>",
    "Jane<jane@example.org>",
    '"Doe, Jane" <jane@example.org>',
    '"quoted local"@example.org',
    "a..b@example.org",
    ".a@example.org",
    "a.@example.org",
    "a@example",
    "a@example.org.",
    "a@-x.org",
    "a@x-.org",
    "a@1.2.3.4",
    "a@[127.0.0.1]",
    "a@b@example.org",
    "a@example.org, b@example.org",
    "a@example.org (comment)",
    "MAILER-DAEMON@mx.example.org",
    "Mail Delivery System <MAILER-DAEMON@mx.example.org>",
    "postmaster",
    "kunde@Bücher.de",
    "kundé@example.org",
    "Jane <>",
    "",
    "anonymous",
    "a" * 70 + "@example.org",
    "a@" + "b" * 64 + ".org",
]


@pytest.mark.parametrize("raw", TRICKY)
def test_sender_address_is_what_parseaddr_reads(raw: str) -> None:
    sender_address.cache_clear()
    assert sender_address(raw) == parsed(raw)


def test_sender_address_on_generated_values() -> None:
    rng = random.Random(42)
    chars = 'abAB09._+-@ <>",;:()[]\\é'
    plain = 0
    for i in range(40_000):
        if i % 2:
            raw = "".join(rng.choice(chars) for _ in range(rng.randint(1, 24)))
        else:
            local = rng.choice(["a", "A.b", "x+y", "_-", "a..b", ".a"]) + str(i)
            domain = rng.choice(["example.org", "Ex-1.COM", "x", "-x.org", "b.c.d"])
            raw = f"{local}@{domain}"
            if rng.random() < 0.4:
                raw = f"{rng.choice(['Jane', 'Jane Doe', 'J 2', 'Doe, J'])} <{raw}>"
        plain += _PLAIN_FROM.fullmatch(raw.strip()) is not None
        assert sender_address.__wrapped__(raw) == parsed(raw), raw
    assert plain > 5_000  # the fast path answers most plain values
