"""Every error leaves the API as JSON `{"error": ..., "detail": ...}` with its status.

Nothing reaches a client as a traceback or an HTML error page: aiohttp's own
HTTP exceptions (404 for unknown routes, 405, 413 for oversized bodies) are
rewritten too, and anything unexpected becomes a logged 500.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from sqlalchemy.exc import IntegrityError

from hub.errors import DomainError, Forbidden, Moved
from hub.records.auth import AuthError
from hub.store.db import is_outage

log = logging.getLogger(__name__)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
}


class ApiError(Exception):
    def __init__(self, status: int, detail: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


def error_response(
    status: int, detail: Any, code: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"error": code or _CODES.get(status, "error"), "detail": detail}
    return web.json_response(body, status=status, headers=headers)


def _moved_location(request: web.Request, target_id: int) -> str:
    # /api/v1/customers/{id}[/rest] -> same path with the surviving id
    parts = request.path.split("/")
    old = request.match_info.get("id")
    if old is not None and old in parts:
        parts[parts.index(old)] = str(target_id)
    location = "/".join(parts)
    return f"{location}?{request.query_string}" if request.query_string else location


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.detail, headers=exc.headers)
    except Moved as exc:
        return error_response(
            308, exc.detail, "moved", {"Location": _moved_location(request, exc.target_id)}
        )
    except DomainError as exc:
        return error_response(exc.status, exc.detail, exc.code)
    except Forbidden as exc:
        return error_response(403, str(exc))
    except AuthError as exc:
        return error_response(422, str(exc))
    except IntegrityError:
        # A unique key raced by a concurrent request (two creates with one
        # email on PostgreSQL): the check-then-insert lost, the database held.
        log.info("integrity conflict on %s %s", request.method, request.path, exc_info=True)
        return error_response(409, "conflicts with data written at the same time; retry")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = exc.text if exc.text and not exc.text.startswith(str(exc.status)) else exc.reason
        return error_response(
            exc.status,
            reason,
            headers={k: v for k, v in exc.headers.items() if k.lower() in ("allow",)},
        )
    except Exception as exc:
        if is_outage(exc):  # locked, restarting, unreachable: the client may retry
            log.warning(
                "database unavailable on %s %s", request.method, request.path, exc_info=True
            )
            return error_response(
                503, "database busy or unreachable; retry", "unavailable", {"Retry-After": "1"}
            )
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal error; it has been logged", "internal")
