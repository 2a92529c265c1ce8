"""Which team a new lead belongs to, from the address the contact came in on."""

from __future__ import annotations

import logging

from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from hub.config import TeamsConfig
from hub.records.identity import InvalidIdentity, normalize_address
from hub.store.db import Database
from hub.store.models import IdentityKind, Team

log = logging.getLogger(__name__)


async def team_id(session: AsyncSession, name: str) -> int:
    """The team's id, creating the team if it is new.

    Two nodes starting at once may both try to create it; the loser's insert
    fails on the unique name inside a savepoint and it reads the winner's row.
    """
    found = (await session.exec(select(Team.id).where(Team.name == name))).first()
    if found is not None:
        return found
    try:
        async with session.begin_nested():
            team = Team(name=name)
            session.add(team)
            await session.flush()
    except IntegrityError:
        winner = (await session.exec(select(Team.id).where(Team.name == name))).one()
        assert winner is not None
        return winner
    assert team.id is not None
    return team.id


async def ensure_team(db: Database, name: str) -> int:
    async with db.write() as session:
        return await team_id(session, name)


class TeamRouter:
    """Built once at start: the config's team names resolved to ids."""

    def __init__(self, default_team_id: int, by_address: dict[str, int]) -> None:
        self.default_team_id = default_team_id
        self._by_address = by_address
        self._region = "DE"

    @classmethod
    async def load(
        cls,
        db: Database,
        config: TeamsConfig,
        region: str,
        aliases: dict[str, str] | None = None,
    ) -> TeamRouter:
        """`aliases`: address -> the address whose team it shares (a mailbox's
        separate reply address -> the mailbox address), unless mapped itself."""
        default_id = await ensure_team(db, config.default)
        by_address: dict[str, int] = {}
        for address, team_name in config.by_address.items():
            try:
                key = normalize_address(address, region).value
            except InvalidIdentity as exc:
                raise ValueError(f"teams.by_address: {exc}") from exc
            by_address[key] = await ensure_team(db, team_name)
        for alias, target in (aliases or {}).items():
            team = by_address.get(target.lower())
            if team is not None:
                by_address.setdefault(alias.lower(), team)
        router = cls(default_id, by_address)
        router._region = region
        return router

    def team_for_recipient(self, recipient: str) -> int:
        """The team of the mailbox or number a contact came in on, else the default team.

        An email sub-address (`sales+c42-<mac>@example.com`, the reply-token
        address our mail carries in Reply-To) belongs to its base mailbox
        (`sales@example.com`) unless the full address is mapped itself.
        """
        if not recipient:
            return self.default_team_id
        try:
            identity = normalize_address(recipient, self._region)
        except InvalidIdentity:
            return self.default_team_id
        key = identity.value
        found = self._by_address.get(key)
        if found is None and identity.kind is IdentityKind.EMAIL:
            local, _, domain = key.rpartition("@")
            base, plus, _tag = local.partition("+")
            if plus and base:
                found = self._by_address.get(f"{base}@{domain}")
        return self.default_team_id if found is None else found
