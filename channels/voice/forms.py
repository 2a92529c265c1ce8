"""Reading provider bodies defensively: bounded, decoded, and with one error type.

sipgate repeats keys (`user[]=a&user[]=b`), which a plain mapping of the
form would collapse to one value, so the voice adapters read the raw body
themselves. Every limit here turns a hostile body into `InvalidCallForm`,
never into a large allocation or another exception.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl

from channels.voice.errors import InvalidCallForm

# Real pushes are a few hundred bytes; a generous bound keeps parsing cheap.
MAX_BODY_BYTES = 64 * 1024
MAX_FIELDS = 200
# A call id, a number or a user id longer than this is not one.
MAX_VALUE_CHARS = 256
# Agents a call may ring at in one event.
MAX_USERS = 100

Pairs = Sequence[tuple[str, str]]


def decode_form(body: bytes) -> list[tuple[str, str]]:
    """The (key, value) pairs of an application/x-www-form-urlencoded body, in order."""
    if len(body) > MAX_BODY_BYTES:
        raise InvalidCallForm(f"body has {len(body)} bytes; at most {MAX_BODY_BYTES} are accepted")
    try:
        text = body.decode("utf-8")
        return parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=False,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except UnicodeDecodeError as exc:
        raise InvalidCallForm("body is not UTF-8 form data") from exc
    except ValueError as exc:  # parse_qsl: over max_num_fields
        raise InvalidCallForm(f"body has more than {MAX_FIELDS} fields") from exc


def storable(text: str) -> None:
    """Refuse what no database column takes: NUL, and lone surrogates (not UTF-8).

    PostgreSQL refuses both in text and JSON, so letting one into the metadata
    would turn a bad request into a failed commit (a 500) further down.
    """
    if "\x00" in text:
        raise InvalidCallForm("body contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidCallForm("body is not valid Unicode") from None


def clean(name: str, value: str) -> str:
    """One field's value, trimmed and checked to be a short string without control characters."""
    value = value.strip()
    if len(value) > MAX_VALUE_CHARS:
        raise InvalidCallForm(f"{name} is longer than {MAX_VALUE_CHARS} characters")
    # Cc: NUL, newlines, escapes; Cs: lone surrogates. A no-break space in a name is fine.
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in value):
        raise InvalidCallForm(f"{name} contains control characters")
    return value


def first(pairs: Pairs, name: str) -> str:
    """The first value of `name`, cleaned; "" when absent."""
    for key, value in pairs:
        if key == name:
            return clean(name, value)
    return ""


def required(pairs: Pairs, name: str) -> str:
    value = first(pairs, name)
    if not value:
        raise InvalidCallForm(f"{name} is missing")
    return value


def every(pairs: Pairs, name: str) -> tuple[str, ...]:
    """All non-empty values of a repeated key, in order, without duplicates."""
    values = [clean(name, value) for key, value in pairs if key == name]
    if len(values) > MAX_USERS:
        raise InvalidCallForm(f"{name} is given more than {MAX_USERS} times")
    return tuple(dict.fromkeys(v for v in values if v))


def raw_metadata(pairs: Pairs) -> dict[str, Any]:
    """Every field as received: a key sent once maps to its value, a repeated one to a list."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        storable(key)
        storable(value)
        if key in out:
            prior = out[key]
            out[key] = [*prior, value] if isinstance(prior, list) else [prior, value]
        else:
            out[key] = [value] if key.endswith("[]") else value
    return out


def pairs_of(form: Mapping[str, str]) -> list[tuple[str, str]]:
    """A mapping (a form the web layer already parsed) as pairs, with the same bounds."""
    if len(form) > MAX_FIELDS:
        raise InvalidCallForm(f"body has more than {MAX_FIELDS} fields")
    pairs = list(form.items())
    for key, value in pairs:
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidCallForm("form fields must be strings")
    return pairs
