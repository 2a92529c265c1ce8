"""Saved segments: named filters, each belonging to a team or (team_id None) shared.

Who may see one follows the customers: a user sees the shared segments and
those of their teams (admins all); another team's segment is "not found". A
team's segment selects that team's customers only, whoever runs it, so a
campaign run without a user scope still cannot reach other teams' customers.
Marketing, supervisors and admins write segments; agents read them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import ColumnElement, or_, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.errors import Conflict, Forbidden, Invalid, NotFound
from hub.records.access import may_use_team
from hub.records.auth import Principal
from hub.segments.filters import SegmentFilter, parse_filter
from hub.store.models import Role, utcnow
from hub.store.tables import segment_t, team_t

WRITERS = frozenset({Role.ADMIN, Role.SUPERVISOR, Role.MARKETING})
s = segment_t.c


def require_writer(principal: Principal) -> None:
    if principal.role not in WRITERS:
        raise Forbidden(f"role {principal.role.value} may not write segments")


def visible(principal: Principal | None) -> ColumnElement[bool]:
    if principal is None or principal.is_admin:
        return true()
    return or_(s.team_id.is_(None), s.team_id.in_(sorted(principal.team_ids)))


def segment_filter(row: Any) -> SegmentFilter:
    """The filter of a stored segment row, with its team's limit (campaigns use this)."""
    return replace(parse_filter(row.filter), within_team=row.team_id)


def as_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "filter": row.filter,
        "team_id": row.team_id,
        "created_by": row.created_by,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }


async def get_segment(conn: AsyncConnection, principal: Principal | None, segment_id: int) -> Any:
    row = (
        await conn.execute(select(segment_t).where(s.id == segment_id).where(visible(principal)))
    ).first()
    if row is None:
        raise NotFound(f"no segment {segment_id}")
    return row


async def list_segments(conn: AsyncConnection, principal: Principal | None) -> list[Any]:
    return list(await conn.execute(select(segment_t).where(visible(principal)).order_by(s.name)))


async def _check_name(conn: AsyncConnection, name: str, except_id: int | None = None) -> None:
    query = select(s.id).where(s.name == name)
    if except_id is not None:
        query = query.where(s.id != except_id)
    if (await conn.execute(query)).first() is not None:
        raise Conflict(f"a segment named {name!r} exists")


async def _check_team(conn: AsyncConnection, principal: Principal, team_id: int | None) -> None:
    if team_id is None:
        if not principal.is_admin:
            yours = ", ".join(str(t) for t in sorted(principal.team_ids)) or "none"
            raise Invalid(
                f"team_id: give one of your teams ({yours}); only admins make shared segments"
            )
        return
    if not may_use_team(principal, team_id):
        raise Forbidden(f"team_id: you are not a member of team {team_id}")
    if (await conn.execute(select(team_t.c.id).where(team_t.c.id == team_id))).first() is None:
        raise Invalid(f"team_id: no team {team_id}")


def default_team(principal: Principal) -> int | None:
    """A user of exactly one team makes segments for it unless they say otherwise."""
    return next(iter(principal.team_ids)) if len(principal.team_ids) == 1 else None


async def create_segment(
    conn: AsyncConnection,
    principal: Principal,
    *,
    name: str,
    filter_data: dict[str, Any],
    team_id: int | None,
) -> Any:
    require_writer(principal)
    parse_filter(filter_data)
    await _check_team(conn, principal, team_id)
    await _check_name(conn, name)
    now = utcnow()
    try:
        new_id = (
            await conn.execute(
                segment_t.insert()
                .values(
                    name=name,
                    filter=filter_data,
                    team_id=team_id,
                    created_by=principal.user_id or None,
                    created_at=now,
                    updated_at=now,
                )
                .returning(s.id)
            )
        ).scalar_one()
    except IntegrityError:
        raise Conflict(f"a segment named {name!r} exists") from None
    return await get_segment(conn, principal, new_id)


async def update_segment(
    conn: AsyncConnection,
    principal: Principal,
    segment_id: int,
    *,
    name: str | None = None,
    filter_data: dict[str, Any] | None = None,
) -> Any:
    require_writer(principal)
    row = await get_segment(conn, principal, segment_id)
    if not may_use_team(principal, row.team_id) and not principal.is_admin:
        raise Forbidden("only admins change shared segments")
    values: dict[str, Any] = {"updated_at": utcnow()}
    if name is not None:
        await _check_name(conn, name, except_id=segment_id)
        values["name"] = name
    if filter_data is not None:
        parse_filter(filter_data)
        values["filter"] = filter_data
    await conn.execute(update(segment_t).where(s.id == segment_id).values(**values))
    return await get_segment(conn, principal, segment_id)


async def delete_segment(conn: AsyncConnection, principal: Principal, segment_id: int) -> None:
    require_writer(principal)
    row = await get_segment(conn, principal, segment_id)
    if not may_use_team(principal, row.team_id) and not principal.is_admin:
        raise Forbidden("only admins delete shared segments")
    try:
        await conn.execute(segment_t.delete().where(s.id == segment_id))
    except IntegrityError:  # a campaign still names it
        raise Conflict(f"segment {segment_id} is used by a campaign") from None
