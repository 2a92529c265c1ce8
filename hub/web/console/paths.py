"""Ids in console URLs: a bad one is the 404 page, never a 500."""

from __future__ import annotations

from aiohttp import web


def path_id(request: web.Request, name: str = "id") -> int:
    raw = request.match_info[name]
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 2**31 - 1:
        raise web.HTTPNotFound(text="404: no such page")
    return int(raw)
