"""Normalising email addresses and phone numbers into one comparable form.

Email rule: the display name is dropped; the domain is lower-cased and
IDNA-encoded (so `bücher.de` and `xn--bcher-kva.de` are one domain); the local
part is lower-cased too. RFC 5321 lets a server treat local parts
case-sensitively, but no mainstream provider does, and treating `Alice@` and
`alice@` as two customers is the worse mistake for a CRM. Dots and `+tags`
are kept: they are significant for most domains.

Phone rule: E.164 via `phonenumbers`, reading national numbers in the
configured default region. A number that cannot be parsed is kept as an
*unverified* identity holding its digits, so nothing a customer gave is lost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import getaddresses, parseaddr
from functools import lru_cache

import phonenumbers

from hub.records.plain_identity import plain_e164, plain_email
from hub.store.models import IdentityKind

_LOCAL_OK = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-\u0080-\U0010ffff]+$")
_DOMAIN_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


# E.164 allows 15 digits; extensions and odd prefixes get some room, a
# pasted serial number or IBAN does not.
MAX_UNVERIFIED_DIGITS = 32


class InvalidIdentity(ValueError):
    """The value cannot be an identity of that kind; the message says why."""


@dataclass(frozen=True, slots=True)
class NormalIdentity:
    kind: IdentityKind
    value: str
    raw: str
    verified: bool = True


@lru_cache(maxsize=65536)  # pure and frozen; failures raise and are not cached
def normalize_email(raw: str) -> NormalIdentity:
    text = raw.strip()
    if not text:
        raise InvalidIdentity("empty email address")
    plain = plain_email(text)
    if plain is not None:
        return NormalIdentity(IdentityKind.EMAIL, plain, text)
    return _parse_email(raw, text)


def _parse_email(raw: str, text: str) -> NormalIdentity:
    """The full rule, for any address (`text` is `raw` stripped, not empty)."""
    parsed = getaddresses([text])
    if len(parsed) != 1:
        raise InvalidIdentity(f"more than one address in {raw!r}")
    addr = parsed[0][1]
    if not addr or "@" not in addr:
        raise InvalidIdentity(f"not an email address: {raw!r}")
    local, _, domain = addr.rpartition("@")
    if not local or not domain:
        raise InvalidIdentity(f"not an email address: {raw!r}")
    if len(local) > 64 or not _LOCAL_OK.match(local) or local.startswith(".") or ".." in local:
        raise InvalidIdentity(f"invalid local part in {raw!r}")
    domain = domain.rstrip(".").lower()
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise InvalidIdentity(f"invalid domain in {raw!r}") from exc
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(_DOMAIN_LABEL.match(label) for label in labels):
        raise InvalidIdentity(f"invalid domain in {raw!r}")
    value = f"{local.lower()}@{ascii_domain}"
    if len(value) > 254:
        raise InvalidIdentity(f"email address too long: {raw!r}")
    return NormalIdentity(IdentityKind.EMAIL, value, text)


@lru_cache(maxsize=65536)
def _e164(text: str, region: str) -> str | None:
    """The E.164 form of a possible number, else None. Cached: phonenumbers costs
    ~20 us a call, and the same senders write (and are looked up) again and again."""
    fast = plain_e164(text.replace("(0)", ""), region)  # what _parse_e164 reads
    if fast is not None:
        return fast
    return _parse_e164(text, region)


def _parse_e164(text: str, region: str) -> str | None:
    """`_e164` through phonenumbers, for any input."""
    # "0049 (0)30-..." : the "(0)" trunk prefix is a common German habit that
    # phonenumbers would otherwise read as part of the number.
    cleaned = re.sub(r"\(0\)", "", text)
    try:
        number = phonenumbers.parse(cleaned, region)
    except phonenumbers.NumberParseException:
        return None
    if (
        phonenumbers.is_possible_number_with_reason(number)
        != phonenumbers.ValidationResult.IS_POSSIBLE
    ):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def normalize_phone(raw: str, region: str) -> NormalIdentity:
    """Never raises for an unparseable number: it becomes an unverified identity."""
    text = raw.strip()
    if not text:
        raise InvalidIdentity("empty phone number")
    e164 = _e164(text, region)
    if e164 is not None:
        return NormalIdentity(IdentityKind.PHONE, e164, text)
    digits = re.sub(r"[^\d+]", "", text)
    if not re.search(r"\d", digits):
        raise InvalidIdentity(f"no digits in phone number {raw!r}")
    if len(digits) > MAX_UNVERIFIED_DIGITS:
        raise InvalidIdentity(f"too many digits for a phone number: {raw[:40]!r}")
    return NormalIdentity(IdentityKind.PHONE, digits, text, verified=False)


def looks_like_email(address: str) -> bool:
    return "@" in address


def normalize_address(raw: str, region: str) -> NormalIdentity:
    """An inbound sender: an email address if it has an @, else a phone number."""
    if looks_like_email(raw):
        return normalize_email(raw)
    return normalize_phone(raw, region)


def display_name(raw: str) -> str:
    """The display name part of `"Alice Example <alice@example.org>"`, if any."""
    name, _addr = parseaddr(raw)
    return name.strip()


__all__ = [
    "InvalidIdentity",
    "NormalIdentity",
    "display_name",
    "normalize_address",
    "normalize_email",
    "normalize_phone",
]
