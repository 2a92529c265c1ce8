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


def path_int(request: web.Request, name: str = "id") -> int:
    raw = request.match_info[name]
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer, not {raw!r}") from None
    if value < 1:
        raise ApiError(400, f"{name} must be positive")
    return value


def query_int(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, f"query parameter {name} must be an integer, not {raw!r}") from None


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
    value = query_int(request, "limit")
    if value is None:
        return default
    if not 1 <= value <= maximum:
        raise ApiError(400, f"limit must be between 1 and {maximum}")
    return value


def encode_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def page_response(items: list[dict[str, Any]], next_after: Any) -> web.Response:
    """One page of a list endpoint: `next_cursor` is null on the last page."""
    cursor = encode_cursor(next_after) if next_after is not None else None
    return web.json_response({"items": items, "next_cursor": cursor})


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
    if not isinstance(data, dict):
        raise ApiError(400, "body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
            for err in exc.errors(include_url=False)
        ]
        raise ApiError(422, problems) from None
