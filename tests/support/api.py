"""A running API with one user per role and team, and a compact way to call it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp.test_utils import TestClient

from hub.records.auth import create_user, issue_token
from hub.runtime import Hub
from hub.store.models import Role

# username -> (role, teams)
USERS: dict[str, tuple[Role, list[str]]] = {
    "admin": (Role.ADMIN, []),
    "sup": (Role.SUPERVISOR, ["Support"]),
    "sales_sup": (Role.SUPERVISOR, ["Sales"]),
    "agent": (Role.AGENT, ["Support"]),
    "sales_agent": (Role.AGENT, ["Sales"]),
    "marketing": (Role.MARKETING, ["Support"]),
}


@dataclass
class Api:
    client: TestClient[Any, Any]
    tokens: dict[str, str]
    user_ids: dict[str, int]
    team_ids: dict[str, int]

    async def call(
        self, method: str, path: str, as_: str | None = "admin", json: Any = None, **kw: Any
    ) -> tuple[int, Any]:
        headers = kw.pop("headers", {})
        if as_ is not None:
            headers["Authorization"] = f"Bearer {self.tokens[as_]}"
        resp = await self.client.request(
            method, path, json=json, headers=headers, allow_redirects=False, **kw
        )
        body = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp.status, body


async def make_users(hub: Hub) -> tuple[dict[str, str], dict[str, int]]:
    tokens, ids = {}, {}
    for name, (role, teams) in USERS.items():
        # Only one password: scrypt is deliberately slow, and one login test needs it.
        password = "pw-agent" if name == "agent" else None
        user = await create_user(
            hub.db,
            name,
            role=role,
            teams=teams,
            password=password,
            password_cost=hub.settings.auth.password_cost,
        )
        assert user.id is not None
        ids[name] = user.id
        tokens[name] = await issue_token(hub.db, name)
    return tokens, ids


def console_route(route: Any) -> bool:
    """A route of the console's pages (hub/web/console/), its static files, or the
    customers' pages (hub/web/public/: unsubscribe, sign-up): HTML, not the API."""
    module = getattr(route.handler, "__module__", "") or ""
    canonical = route.resource.canonical if route.resource is not None else ""
    return module.startswith(("hub.web.console", "hub.web.public")) or canonical == "/static"
