"""Who may see and do what. Every query of customer data goes through these
expressions (see hub/records/customers.py), so no endpoint can forget team scoping.

A user sees the customers of their teams; admins see all. Conversations,
history, tasks and consent are visible exactly when their customer is.
Something outside the user's teams is reported as not found (404), so that
team scoping does not reveal which ids exist; an action the user's role does
not allow is 403.
"""

from __future__ import annotations

import enum

from sqlalchemy import ColumnElement, true
from sqlmodel import col

from hub.errors import Forbidden
from hub.records.auth import Principal
from hub.store.models import Customer, Role


class Action(enum.StrEnum):
    READ = "read"
    WRITE_CUSTOMER = "write customers"
    DELETE_CUSTOMER = "delete customers"
    MERGE_CUSTOMERS = "merge customers"
    WRITE_HISTORY = "write notes and conversations"
    WRITE_TASKS = "write tasks"


_ALLOWED: dict[Action, frozenset[Role]] = {
    Action.READ: frozenset(Role),
    Action.WRITE_CUSTOMER: frozenset({Role.ADMIN, Role.SUPERVISOR, Role.AGENT, Role.MARKETING}),
    Action.DELETE_CUSTOMER: frozenset({Role.ADMIN, Role.SUPERVISOR}),
    Action.MERGE_CUSTOMERS: frozenset({Role.ADMIN, Role.SUPERVISOR}),
    Action.WRITE_HISTORY: frozenset({Role.ADMIN, Role.SUPERVISOR, Role.AGENT}),
    Action.WRITE_TASKS: frozenset({Role.ADMIN, Role.SUPERVISOR, Role.AGENT}),
}


def require(principal: Principal, action: Action) -> None:
    if principal.role not in _ALLOWED[action]:
        raise Forbidden(f"role {principal.role.value} may not {action.value}")


def customer_visible(principal: Principal) -> ColumnElement[bool]:
    """The WHERE clause that limits customer rows to the principal's teams."""
    if principal.is_admin:
        return true()
    return col(Customer.team_id).in_(sorted(principal.team_ids))


def may_use_team(principal: Principal, team_id: int | None) -> bool:
    return principal.is_admin or (team_id is not None and team_id in principal.team_ids)
