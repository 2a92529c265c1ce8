"""PBX users to crmhub users: by PBX id, username, extension or phone number; unknown ones
stay raw."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from channels.voice.pbx import number_key
from hub.store.models import UserTeam
from hub.store.tables import user_t

user_team_t = UserTeam.__table__  # type: ignore[attr-defined]


async def map_users(
    conn: AsyncConnection, raw: Iterable[str], region: str = "DE"
) -> dict[str, int]:
    """Raw PBX id -> crmhub user id for those that match an active user.

    A PBX id set per user wins over a username, which wins over an extension,
    which wins over the user's phone number (a sipgate or PBX answeringNumber,
    in any spelling: "0171 …", "49171…", "+49 171 …"; national numbers read in
    `region`), so one value never maps to two users.
    """
    wanted = {r for r in raw if r}
    if not wanted:
        return {}
    numbers = phone_keys(wanted, region)
    rows = (
        await conn.execute(
            select(
                user_t.c.id,
                user_t.c.pbx_id,
                user_t.c.username,
                user_t.c.phone_extension,
                user_t.c.phone,
            )
            .where(user_t.c.active.is_(True))
            .where(
                or_(
                    user_t.c.pbx_id.in_(wanted),
                    user_t.c.username.in_(wanted),
                    user_t.c.phone_extension.in_(wanted),
                    user_t.c.phone.in_({n for n in numbers.values() if n.startswith("+")}),
                )
            )
            .order_by(user_t.c.id)
        )
    ).all()
    return resolve_users(wanted, numbers, rows)


def phone_keys(wanted: Iterable[str], region: str) -> dict[str, str]:
    """The values that could be a phone number, with their number keys (E.164 when
    they parse). Only these are parsed (a parse costs ~25 µs; usernames are not)."""
    return {r: number_key(r, region) for r in wanted if sum(c.isdigit() for c in r) >= 6}


def resolve_users(wanted: set[str], numbers: dict[str, str], rows: Sequence[Any]) -> dict[str, int]:
    """`map_users`' answer from the candidate rows (id, pbx id, username, extension,
    phone; by id), which may hold more users than `wanted` asks for."""
    found: dict[str, int] = {}
    for column in (1, 2, 3):
        for row in rows:
            value = row[column]
            if value in wanted and value not in found:
                found[value] = row[0]
    by_phone = {row[4]: row[0] for row in reversed(rows) if row[4]}  # lowest id wins
    for value, key in numbers.items():
        if value in wanted and value not in found and key in by_phone:
            found[value] = by_phone[key]
    return found


async def team_members(
    conn: AsyncConnection, team_ids: Iterable[int | None]
) -> dict[int | None, set[int]]:
    """Each team's members (every id asked for is a key; None: nobody)."""
    members: dict[int | None, set[int]] = {t: set() for t in team_ids}
    wanted = [t for t in members if t is not None]
    if wanted:
        rows = await conn.execute(
            select(user_team_t.c.team_id, user_team_t.c.user_id).where(
                user_team_t.c.team_id.in_(wanted)
            )
        )
        for team_id, user_id in rows:
            members[team_id].add(user_id)
    return members
