"""When a marketing message may go: quiet hours in the recipient's local time, the
campaign's rate, and the next free slot under the weekly cap.

The recipient's zone: a phone number's region (phonenumbers' time zone data:
a number with one zone, e.g. any German one, gives it), else the customer's
country when it has one zone, else campaigns.default_timezone. Messages due
in quiet hours get a `next_attempt_at` at the start of the next allowed
window, so the dispatcher, which only claims due rows, holds them.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as number_zones

from hub.config import QuietHours


@lru_cache(maxsize=4096)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


@lru_cache(maxsize=65536)
def zone_for(phone: str | None, country: str | None, default: str) -> ZoneInfo:
    if phone:
        try:
            zones = number_zones.time_zones_for_number(phonenumbers.parse(phone, None))
        except phonenumbers.NumberParseException:
            zones = ()
        if len(zones) == 1 and (found := _zone(zones[0])) is not None:
            return found
    if country and len(country) == 2:
        zones = tuple(number_zones.time_zones_for_geographical_number(
            phonenumbers.example_number(country.upper()) or phonenumbers.PhoneNumber()
        ))  # fmt: skip
        if len(zones) == 1 and (found := _zone(zones[0])) is not None:
            return found
    return _zone(default) or ZoneInfo("UTC")


def _hm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def next_allowed(at: datetime, zone: ZoneInfo, quiet: QuietHours | None) -> datetime:
    """`at` itself when it is inside the allowed window in `zone`, else the window's next
    start (UTC). A window with start > end spans midnight (e.g. 22:00-06:00 for a night
    shift line)."""
    if quiet is None:
        return at
    start, end = _hm(quiet.start), _hm(quiet.end)
    local = at.astimezone(zone)
    now_t = local.time()
    inside = start <= now_t < end if start <= end else (now_t >= start or now_t < end)
    if inside:
        return at
    day = local.date() if now_t < start else local.date() + timedelta(days=1)
    opens = datetime.combine(day, start, tzinfo=zone)
    return opens.astimezone(UTC)
