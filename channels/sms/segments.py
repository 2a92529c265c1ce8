"""How many SMS segments a body costs, and whether it may be sent at all.

A message is billed and delivered per segment. One character outside the
GSM-7 alphabet (an emoji, a Polish "ł") switches the whole message to UCS-2,
which fits less than half as much per segment, so the count is worth showing
before sending. German umlauts and "ß" are in GSM-7; "€" and the brackets are
in its extension table and cost two septets (escape + character).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

# GSM 03.38 basic character set (without the escape character itself).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension table: reached through an escape, so each costs two septets.
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

GSM7_SINGLE, GSM7_MULTI = 160, 153  # septets; a multi-part header takes 7
UCS2_SINGLE, UCS2_MULTI = 70, 67  # UTF-16 code units


class Encoding(enum.StrEnum):
    GSM7 = "GSM-7"
    UCS2 = "UCS-2"


@dataclass(frozen=True, slots=True)
class SegmentCount:
    encoding: Encoding
    # Septets (GSM-7) or UTF-16 code units (UCS-2): an emoji is two.
    units: int
    segments: int


class BodyTooLong(ValueError):
    """Refused before any provider call: Twilio rejects it anyway, after billing nothing."""


def _segments(units: int, single: int, multi: int) -> int:
    return 1 if units <= single else math.ceil(units / multi)


def count_segments(text: str) -> SegmentCount:
    septets = 0
    for char in text:
        if char in GSM7_BASIC:
            septets += 1
        elif char in GSM7_EXTENSION:
            septets += 2
        else:
            units = len(text.encode("utf-16-le")) // 2
            return SegmentCount(Encoding.UCS2, units, _segments(units, UCS2_SINGLE, UCS2_MULTI))
    return SegmentCount(Encoding.GSM7, septets, _segments(septets, GSM7_SINGLE, GSM7_MULTI))


def check_body(text: str, max_chars: int) -> SegmentCount:
    """The segment count of a body that may be sent; `BodyTooLong` for one that may not."""
    if not text:
        raise BodyTooLong("the message is empty")
    if len(text) > max_chars:
        raise BodyTooLong(
            f"the message has {len(text)} characters; at most {max_chars} can be sent by SMS"
        )
    return count_segments(text)
