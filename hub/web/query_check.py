"""Unknown or repeated query parameters are a 400 naming them, on every API route.

A typo in a filter must never mean "everyone": before this, `customers?zip=10`
ignored `zip` and listed every customer, and a second `tag=` was dropped.
The parameters each operation takes are the ones the OpenAPI document lists
(hub/web/openapi.py), so the document and the check cannot drift apart; a
parameter whose schema is an array may repeat, the others may not.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from hub.web.errors import error_response

# (METHOD, path template) -> (names allowed, names that may repeat)
Allowed = dict[tuple[str, str], tuple[frozenset[str], frozenset[str]]]


def allowed_from(document: dict[str, Any]) -> Allowed:
    allowed: Allowed = {}
    for path, operations in document["paths"].items():
        if not (path.startswith("/api/") or path in ("/healthz", "/readyz")):
            continue  # webhooks: providers add parameters of their own, and sign them
        for method, op in operations.items():
            query = [p for p in op.get("parameters", []) if p.get("in") == "query"]
            names = frozenset(p["name"] for p in query)
            multi = frozenset(p["name"] for p in query if p["schema"].get("type") == "array")
            allowed[(method.upper(), path)] = (names, multi)
    return allowed


def nul_refusal(request: web.Request) -> web.Response | None:
    """A 400 when a query parameter holds NUL, which PostgreSQL cannot store or
    compare in text: on every route, webhooks included (hub/web/webhooks/mount.py)."""
    nul = next((k for k, v in request.query.items() if "\x00" in k + v), None)
    if nul is None:
        return None
    return error_response(400, f"query parameter {nul!r} contains a NUL character")


def middleware(allowed: Allowed) -> Any:
    @web.middleware
    async def check_query(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.query:
            refused = nul_refusal(request)
            if refused is not None:
                return refused
            route = request.match_info.route
            resource = route.resource
            key = (route.method, resource.canonical if resource is not None else "")
            spec = allowed.get(key)
            if spec is not None:
                names, multi = spec
                counts = Counter(key for key, _ in request.query.items())
                unknown = sorted(set(counts) - names)
                if unknown:
                    known = ", ".join(sorted(names)) or "none"
                    return error_response(
                        400,
                        f"unknown query parameter {', '.join(unknown)} (this route takes: {known})",
                    )
                repeated = sorted(n for n, c in counts.items() if c > 1 and n not in multi)
                if repeated:
                    return error_response(
                        400, f"query parameter {', '.join(repeated)} given more than once"
                    )
        return await handler(request)

    return check_query
