"""Fast paths of the identity rules (hub/records/identity.py) for the common plain forms.

An inbound sender is normalised before its contact is queued, and most
senders are first-seen, so the parsers' cost is paid per contact:
`email.utils.getaddresses` ~10 us, `phonenumbers.parse` ~20 us. Most senders
are in a plain form whose result the full rule gives without parsing:
`local@domain` (also upper-case, or behind a plain display name), and
`+49 151 …`, `0049 …`, `0151 …` numbers of the default region. These
functions answer those forms and return None for anything else (and for
anything the full rule might reject), which then takes the full rule: a fast
path never decides against a value. tests/records/test_plain_identity.py
compares both on many generated and tricky inputs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
from phonenumbers import PhoneMetadata

# Dot-atoms of letters, digits, `_`, `+`, `-` before the @; LDH labels (at least two,
# each at most 63 characters, as the full rule's IDNA and label checks require) after.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PLAIN_ADDRESS = re.compile(rf"([A-Za-z0-9_+\-]+(?:\.[A-Za-z0-9_+\-]+)*)@({_LABEL}(?:\.{_LABEL})+)")
# `Alice Example <alice@example.org>`: words of letters and digits, one space apart.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9]+(?: [A-Za-z0-9]+)*")


def plain_email(text: str) -> str | None:
    """The normal form of a stripped, non-empty address in a plain form, else None."""
    address = text
    if text[-1] == ">":
        name, sep, address = text[:-1].partition(" <")
        if not sep or not _PLAIN_NAME.fullmatch(name):
            return None
    match = _PLAIN_ADDRESS.fullmatch(address)
    if match is None:
        return None
    local, domain = match.groups()
    if len(local) > 64:
        return None
    # ASCII labels pass IDNA encoding unchanged.
    value = f"{local.lower()}@{domain.lower()}"
    return value if len(value) <= 254 else None


# Digits in groups, one space or hyphen apart: `+49 151 2345678`, `0151-2345678`.
_GROUPED = re.compile(r"(\+)?([0-9]+(?:[ \-][0-9]+)*)")  # ASCII digits only


@dataclass(frozen=True, slots=True)
class _Region:
    """What phonenumbers reads for numbers of one region and its country code."""

    country_code: str
    international_prefix: str | None  # "00": `0049 …` is `+49 …`
    national_prefix: str | None  # "0": `0151 …` is `+49 151 …`
    zero_prefix: bool  # the country's national prefix is "0" or none: `+49 1…` keeps its digits
    possible: frozenset[int]  # lengths of a national significant number (not local-only)
    pattern: re.Pattern[str] | None  # the region's national numbers


@lru_cache(maxsize=64)
def _region(region: str) -> _Region | None:
    """The parts of phonenumbers' metadata the fast path reads; None: no fast path."""
    meta = PhoneMetadata.metadata_for_region(region)
    if meta is None or meta.country_code is None:
        return None
    # phonenumbers judges a number by its country code's main region.
    main_region = phonenumbers.region_code_for_country_code(meta.country_code)
    main = PhoneMetadata.metadata_for_region(main_region)
    if main is None or main.general_desc is None:
        return None
    general = main.general_desc
    lengths = tuple(general.possible_length or ())
    if not lengths or lengths[0] == -1:
        return None
    # Only a literal IDD "00" and a literal national prefix "0" without a transform rule
    # are read here; any other rule (carrier codes, groups) takes the full parser.
    idd = meta.international_prefix if meta.international_prefix == "00" else None
    zero_prefix = main.national_prefix_for_parsing in (None, "0") and not (
        main.national_prefix_transform_rule
    )
    # phonenumbers strips an international prefix before a national one: where that
    # prefix is not "00" (IL, NZ, TW, UY: "0(?:0|1[2-9])…"), `01…` may be a call abroad.
    national = (
        "0"
        if zero_prefix
        and main.national_prefix_for_parsing
        and meta is main
        and meta.international_prefix in (None, "00")
        else None
    )
    pattern = general.national_number_pattern
    return _Region(
        str(meta.country_code),
        idd,
        national,
        zero_prefix,
        frozenset(lengths) - frozenset(general.possible_length_local_only or ()),
        re.compile(pattern) if pattern else None,
    )


def _first_country_code(digits: str) -> str | None:
    """The country code phonenumbers reads at the start of `digits` (codes are prefix-free,
    and it takes the shortest that exists)."""
    for i in (1, 2, 3):
        if int(digits[:i]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return digits[:i]
    return None


def plain_e164(text: str, region: str) -> str | None:
    """The E.164 form of a stripped number in a plain form of `region`'s country, else None.

    None also for every number the full rule might not read as possible: then
    phonenumbers decides (and may still find an E.164 form)."""
    match = _GROUPED.fullmatch(text)
    if match is None:
        return None
    info = _region(region)
    if info is None:
        return None
    plus, grouped = match.groups()
    digits = grouped.replace(" ", "").replace("-", "")
    if plus:
        international = digits
    elif info.international_prefix and digits.startswith(info.international_prefix):
        international = digits[len(info.international_prefix) :]
        # phonenumbers strips the IDD only when no 0 follows it.
        if international[:1] == "0":
            return None
    elif info.national_prefix and digits.startswith(info.national_prefix):
        return _national(digits, info)
    else:
        return None
    cc = info.country_code
    if (
        not info.zero_prefix
        or not international.startswith(cc)
        or _first_country_code(international) != cc
    ):
        return None
    nsn = international[len(cc) :]
    if nsn[:1] in ("", "0") or len(nsn) not in info.possible:
        return None  # a national prefix after the code, or not a possible length
    return "+" + international


def _national(digits: str, info: _Region) -> str | None:
    """`0151 …` in the region: phonenumbers strips the national prefix "0" unless the
    number was a national number with it and is none without it."""
    nsn = digits[1:]
    if nsn[:1] in ("", "0") or len(nsn) not in info.possible or info.pattern is None:
        return None
    if info.pattern.fullmatch(digits) and not info.pattern.fullmatch(nsn):
        return None
    return "+" + info.country_code + nsn
