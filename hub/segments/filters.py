"""A segment's filter: JSON from the API or the CLI, read strictly into `SegmentFilter`.

Strict because a filter decides who gets a newsletter: an unknown field or
operator that were ignored would widen the audience (the `customers?zip=10`
bug listed everyone). So every unknown name is a 422 that names it and lists
the known ones, and every value is checked for its type here, before any SQL.

The shape (all fields optional; an empty filter selects every customer):

    postal_code          {"prefix": "10" | ["10", "12"]} or {"from": "10000", "to": "12999"}
    city, country,       "Berlin" or {"in": ["Berlin", "Hamburg"]} (case-insensitive)
      industry
    tags                 {"any": [...], "all": [...], "none": [...]}
    owner_id, team_id    5, [5, 6], or null (no owner / no team)
    kind                 "lead" or "customer"
    last_inbound,        {"before": ISO time, "after": ISO time}
      last_outbound,
      last_contact       (the later of inbound and outbound)
    replied_to_campaign  a campaign id
    custom               {"field": "value" | {"eq": v} | {"in": [...]} | {"exists": bool}}
    consent              {"channel": "email", "purpose": "newsletter",
                          "state": "opted_in" | "opted_out" | "none"}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hub.errors import Invalid
from hub.store.models import ConsentState, CustomerKind

# Values of `consent.state`: "none" means no consent row for that channel and purpose.
CONSENT_NONE = "none"
CONSENT_STATES = (ConsentState.OPTED_IN.value, ConsentState.OPTED_OUT.value, CONSENT_NONE)
CONSENT_CHANNELS = ("email", "sms", "phone")
MAX_LIST = 1000  # values in one list: a filter is a selection, not an upload
MAX_TEXT = 200


@dataclass(frozen=True, slots=True)
class TimeRange:
    before: datetime | None = None
    after: datetime | None = None


@dataclass(frozen=True, slots=True)
class PostalCode:
    prefixes: tuple[str, ...] = ()
    # Inclusive, compared as text among codes as long as the bounds (five digits in DE).
    low: str | None = None
    high: str | None = None


@dataclass(frozen=True, slots=True)
class CustomField:
    name: str
    equals: tuple[str, ...] = ()  # any of these (compared as text)
    exists: bool | None = None


@dataclass(frozen=True, slots=True)
class ConsentFilter:
    channel: str
    purpose: str
    state: str


@dataclass(frozen=True, slots=True)
class SegmentFilter:
    postal_code: PostalCode | None = None
    city: tuple[str, ...] = ()
    country: tuple[str, ...] = ()
    industry: tuple[str, ...] = ()
    tags_any: tuple[str, ...] = ()
    tags_all: tuple[str, ...] = ()
    tags_none: tuple[str, ...] = ()
    # None: not filtered; a tuple that holds None matches "no owner / no team".
    owner_ids: tuple[int | None, ...] | None = None
    team_ids: tuple[int | None, ...] | None = None
    kind: str | None = None
    last_inbound: TimeRange | None = None
    last_outbound: TimeRange | None = None
    last_contact: TimeRange | None = None
    replied_to_campaign: int | None = None
    custom: tuple[CustomField, ...] = ()
    consent: tuple[ConsentFilter, ...] = field(default=())
    # Not from the JSON: a saved segment of a team selects that team's customers
    # only, also where no user scope applies (a campaign run). See store.segment_filter.
    within_team: int | None = None


def _unknown(what: str, names: set[str], known: tuple[str, ...]) -> Invalid:
    return Invalid(
        f"{what}: unknown {'field' if what == 'filter' else 'operator'} "
        f"{', '.join(repr(n) for n in sorted(names))} (known: {', '.join(known)})"
    )


def _object(
    path: str, raw: Any, known: tuple[str, ...], *, what: str | None = None
) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise Invalid(f"{path}: must be an object with {' / '.join(known)}")
    extra = {str(k) for k in raw} - set(known)
    if extra:
        raise _unknown(what or path, extra, known)
    if not raw:
        raise Invalid(f"{path}: give at least one of {', '.join(known)}")
    return raw


def _text(path: str, raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise Invalid(f"{path}: must be a non-empty string")
    if len(raw) > MAX_TEXT or "\x00" in raw:
        raise Invalid(f"{path}: at most {MAX_TEXT} characters, no NUL")
    return raw.strip()


def _texts(path: str, raw: Any) -> tuple[str, ...]:
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise Invalid(f"{path}: must not be empty")
    if len(items) > MAX_LIST:
        raise Invalid(f"{path}: at most {MAX_LIST} values")
    return tuple(
        _text(f"{path}[{i}]" if isinstance(raw, list) else path, v) for i, v in enumerate(items)
    )


def _id(path: str, raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= 2**31 - 1:
        raise Invalid(f"{path}: must be a positive integer id")
    return raw


def _ids(path: str, raw: Any) -> tuple[int | None, ...]:
    items = raw if isinstance(raw, list) else [raw]
    if not items or len(items) > MAX_LIST:
        raise Invalid(f"{path}: give 1 to {MAX_LIST} ids")
    return tuple(None if v is None else _id(path, v) for v in items)


def _time(path: str, raw: Any) -> datetime:
    if not isinstance(raw, str):
        raise Invalid(f"{path}: must be an ISO 8601 time")
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(f"{path}: must be an ISO 8601 time, not {raw!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise Invalid(f"{path}: outside the years 1 to 9999 in UTC") from None


def _strings(path: str, raw: Any) -> tuple[str, ...]:
    """`"x"` or `{"in": [...]}`: the operator form leaves room for more operators."""
    if isinstance(raw, Mapping):
        return _texts(f"{path}.in", _object(path, raw, ("in",))["in"])
    return _texts(path, raw)


def _postal(raw: Any) -> PostalCode:
    obj = _object("postal_code", raw, ("prefix", "from", "to"))
    if "prefix" in obj and ("from" in obj or "to" in obj):
        raise Invalid("postal_code: give prefix, or from/to, not both")
    if "prefix" in obj:
        return PostalCode(prefixes=_texts("postal_code.prefix", obj["prefix"]))
    low = _text("postal_code.from", obj["from"]) if "from" in obj else None
    high = _text("postal_code.to", obj["to"]) if "to" in obj else None
    if low is not None and high is not None and low > high:
        raise Invalid(f"postal_code: from {low!r} is after to {high!r}")
    return PostalCode(low=low, high=high)


def _tags(raw: Any) -> dict[str, tuple[str, ...]]:
    obj = _object("tags", raw, ("any", "all", "none"))
    return {op: _texts(f"tags.{op}", obj[op]) for op in obj}


def _range(path: str, raw: Any) -> TimeRange:
    obj = _object(path, raw, ("before", "after"))
    before = _time(f"{path}.before", obj["before"]) if "before" in obj else None
    after = _time(f"{path}.after", obj["after"]) if "after" in obj else None
    return TimeRange(before=before, after=after)


def _custom(raw: Any) -> tuple[CustomField, ...]:
    if not isinstance(raw, Mapping) or not raw:
        raise Invalid("custom: must be an object of custom field names")
    out = []
    for name, cond in raw.items():
        path = f"custom.{name}"
        key = _text(path, name)
        if isinstance(cond, Mapping):
            obj = _object(path, cond, ("eq", "in", "exists"))
            if len(obj) != 1:
                raise Invalid(f"{path}: give one of eq, in, exists")
            if "exists" in obj:
                if not isinstance(obj["exists"], bool):
                    raise Invalid(f"{path}.exists: must be true or false")
                out.append(CustomField(key, exists=obj["exists"]))
                continue
            op = "eq" if "eq" in obj else "in"
            values = obj[op] if op == "in" else [obj[op]]
            if op == "in" and (not isinstance(values, list) or not values):
                raise Invalid(f"{path}.in: must be a non-empty list")
            out.append(CustomField(key, equals=tuple(_scalar(f"{path}.{op}", v) for v in values)))
        else:
            out.append(CustomField(key, equals=(_scalar(path, cond),)))
    return tuple(out)


def _scalar(path: str, raw: Any) -> str:
    """Custom values compare as text: a number 5 matches the stored 5 and "5"."""
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise Invalid(f"{path}: must be a string or a number")
    return _text(path, str(raw))


def _consent(raw: Any) -> tuple[ConsentFilter, ...]:
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for i, item in enumerate(items):
        path = f"consent[{i}]" if isinstance(raw, list) else "consent"
        obj = _object(path, item, ("channel", "purpose", "state"))
        missing = [k for k in ("channel", "state") if k not in obj]
        if missing:
            raise Invalid(f"{path}: {', '.join(missing)} required")
        channel = _text(f"{path}.channel", obj["channel"])
        if channel not in CONSENT_CHANNELS:
            raise Invalid(f"{path}.channel: must be one of {', '.join(CONSENT_CHANNELS)}")
        state = _text(f"{path}.state", obj["state"])
        if state not in CONSENT_STATES:
            raise Invalid(f"{path}.state: must be one of {', '.join(CONSENT_STATES)}")
        purpose = _text(f"{path}.purpose", obj.get("purpose", "marketing"))
        out.append(ConsentFilter(channel, purpose, state))
    return tuple(out)


FIELDS = (
    "city",
    "consent",
    "country",
    "custom",
    "industry",
    "kind",
    "last_contact",
    "last_inbound",
    "last_outbound",
    "owner_id",
    "postal_code",
    "replied_to_campaign",
    "tags",
    "team_id",
)


def parse_filter(data: Mapping[str, Any]) -> SegmentFilter:
    """The filter, or `Invalid` (422) naming the first unknown field, operator or bad value."""
    if not isinstance(data, Mapping):
        raise Invalid("filter: must be a JSON object")
    extra = {str(k) for k in data} - set(FIELDS)
    if extra:
        raise _unknown("filter", extra, FIELDS)
    kw: dict[str, Any] = {}
    if "postal_code" in data:
        kw["postal_code"] = _postal(data["postal_code"])
    for name in ("city", "country", "industry"):
        if name in data:
            kw[name] = _strings(name, data[name])
    if "tags" in data:
        for op, values in _tags(data["tags"]).items():
            kw[f"tags_{op}"] = values
    if "owner_id" in data:
        kw["owner_ids"] = _ids("owner_id", data["owner_id"])
    if "team_id" in data:
        kw["team_ids"] = _ids("team_id", data["team_id"])
    if "kind" in data:
        kind = data["kind"]
        if kind not in {k.value for k in CustomerKind}:
            raise Invalid("kind: must be lead or customer")
        kw["kind"] = kind
    for name in ("last_inbound", "last_outbound", "last_contact"):
        if name in data:
            kw[name] = _range(name, data[name])
    if "replied_to_campaign" in data:
        kw["replied_to_campaign"] = _id("replied_to_campaign", data["replied_to_campaign"])
    if "custom" in data:
        kw["custom"] = _custom(data["custom"])
    if "consent" in data:
        kw["consent"] = _consent(data["consent"])
    return SegmentFilter(**kw)
