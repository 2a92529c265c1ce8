"""Reading path, query and body parameters, with a 4xx for anything malformed."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from hub.web.errors import ApiError

M = TypeVar("M", bound=BaseModel)
# Ids are 32-bit on PostgreSQL (and must not overflow SQLite's 64 bits): a
# larger number cannot name anything, so it is a 400, not a database error.
MAX_ID = 2**31 - 1


def nul_at(value: Any, where: str = "") -> str | None:
    """Where a NUL character sits in parsed JSON (a dotted path, "" for the top), or None.

    PostgreSQL cannot store NUL in text (SQLite can): refused at the edge, the
    same on both, instead of a database error (a 500) on one of them."""
    if isinstance(value, str):
        return where if "\x00" in value else None
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        path = f"{where}.{key}" if where else str(key)
        if isinstance(key, str) and "\x00" in key:
            return path
        found = nul_at(item, path)
        if found is not None:
            return found
    return None


def as_id(name: str, raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise ApiError(400, f"{name} must be an integer")
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer, not {raw!r}") from None
    if not 1 <= value <= MAX_ID:
        raise ApiError(400, f"{name} must be between 1 and {MAX_ID}")
    return value


def path_int(request: web.Request, name: str = "id") -> int:
    return as_id(name, request.match_info[name])


def query_int(request: web.Request, name: str) -> int | None:
    """An id in the query string (owner_id, customer_id, ...)."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    return as_id(f"query parameter {name}", raw)


def query_bool(request: web.Request, name: str) -> bool | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise ApiError(400, f"query parameter {name} must be true or false, not {raw!r}")


def query_time(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(
            400, f"query parameter {name} must be an ISO 8601 time, not {raw!r}"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def query_limit(request: web.Request, default: int, maximum: int) -> int:
    raw = request.query.get("limit")
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"limit must be an integer, not {raw!r}") from None
    if not 1 <= value <= maximum:
        raise ApiError(400, f"limit must be between 1 and {maximum}")
    return value


def encode_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def page_response(items: list[dict[str, Any]], next_after: Any) -> web.Response:
    """One page of a list endpoint: `next_cursor` is null on the last page."""
    cursor = encode_cursor(next_after) if next_after is not None else None
    return web.json_response({"items": items, "next_cursor": cursor})


def id_cursor(request: web.Request) -> int | None:
    """The cursor of a list ordered by id: the last id of the previous page."""
    cursor = decode_cursor(request)
    return None if cursor is None else as_id("cursor", cursor)


def decode_cursor(request: web.Request) -> Any:
    raw = request.query.get("cursor")
    if not raw:
        return None
    try:
        return json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "cursor is not one this API handed out") from None


async def read_body(request: web.Request, model: type[M]) -> M:
    if request.content_type != "application/json":
        raise ApiError(415, f"expected application/json, got {request.content_type or 'nothing'}")
    raw = await request.read()  # raises 413 past client_max_size
    try:
        data = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "body is not valid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise ApiError(400, "body must be a JSON object")
    field = nul_at(data)
    if field is not None:
        raise ApiError(422, [{"field": field, "message": "contains a NUL character"}])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
            for err in exc.errors(include_url=False)
        ]
        raise ApiError(422, problems) from None
