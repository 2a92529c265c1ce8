"""The access log without personal data: path, status, size and time, no query string.

Query strings carry phone numbers (`lookup?phone=`), email addresses and
search terms, and a log file is copied, kept and read far more widely than
the database; `server.access_log_query: true` puts them back for debugging.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from hub.config import ServerConfig


class AccessLogger(AbstractAccessLogger):
    include_query = False

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        target = request.path_qs if self.include_query else request.path
        self.logger.info(
            '%s "%s %s HTTP/%d.%d" %d %d %.3fs',
            request.remote,
            request.method,
            target,
            request.version.major,
            request.version.minor,
            response.status,
            response.body_length,
            time,
        )


class AccessLoggerWithQuery(AccessLogger):
    include_query = True


def access_logger(include_query: bool) -> type[AccessLogger]:
    return AccessLoggerWithQuery if include_query else AccessLogger


LOGGER = logging.getLogger("aiohttp.access")


def runner_options(server: ServerConfig) -> dict[str, Any]:
    """The AppRunner's access-log arguments (`crmhub serve` and the tests use these)."""
    return {
        "access_log": LOGGER if server.access_log else None,
        "access_log_class": access_logger(server.access_log_query),
    }
