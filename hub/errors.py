"""Domain errors, each mapping to one HTTP status and one CLI exit reason."""

from __future__ import annotations


class DomainError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequest(DomainError):
    status = 400
    code = "bad_request"


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class Invalid(DomainError):
    status = 422
    code = "invalid"


class Forbidden(PermissionError):
    """The principal's role or team does not allow it (403); not a DomainError, so
    a handler that maps domain errors can never turn a refusal into a 4xx of another kind."""


class Moved(DomainError):
    """The record was merged into another; clients follow the redirect."""

    status = 308
    code = "moved"

    def __init__(self, entity: str, target_id: int) -> None:
        super().__init__(f"{entity} was merged into {target_id}")
        self.target_id = target_id


__all__ = ["BadRequest", "Conflict", "DomainError", "Forbidden", "Invalid", "Moved", "NotFound"]
