"""Users, passwords and API tokens.

Passwords: see passwords.py. API tokens are random and only their SHA-256 is
stored, so a database leak does not leak working tokens; a token is shown
once, when made. A token expires after `auth.token_idle_days` without use;
deleting its row revokes it; disabling a user stops all of their tokens.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlmodel import col, select

from hub.records import passwords
from hub.records.passwords import DEFAULT_COST, hash_password
from hub.records.passwords import verify_password as verify_password  # re-exported
from hub.records.teams import team_id
from hub.store.db import Database
from hub.store.models import ApiToken, Role, User, UserTeam, utcnow

TOKEN_PREFIX = "crm_"
# last_used_at is written at most this often per token: a write per request
# would cost the database more than the request itself.
TOUCH_SECONDS = 60.0


class AuthError(ValueError):
    pass


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: every scoped query and permission check takes one."""

    user_id: int
    username: str
    role: Role
    team_ids: frozenset[int]

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN


async def load_principal(db: Database, user_id: int) -> Principal | None:
    async with db.read() as s:
        user = (await s.exec(select(User).where(User.id == user_id))).first()
        if user is None or not user.active:
            return None
        teams = (await s.exec(select(UserTeam.team_id).where(UserTeam.user_id == user_id))).all()
        return Principal(user_id, user.username, Role(user.role), frozenset(teams))


async def authenticate_token(
    db: Database, token: str, *, idle_days: float = 30.0, now: datetime | None = None
) -> Principal | None:
    """The token's user, or None when it is unknown, revoked, idle too long or
    its user is disabled."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    now = now or utcnow()
    digest = token_hash(token)
    async with db.read() as s:
        row = (
            await s.exec(
                select(ApiToken.user_id, ApiToken.created_at, ApiToken.last_used_at).where(
                    ApiToken.token_hash == digest
                )
            )
        ).first()
    if row is None:
        return None
    user_id, created_at, last_used_at = row
    last = last_used_at or created_at
    if last < now - timedelta(days=idle_days):
        return None
    principal = await load_principal(db, user_id)
    if principal is not None and (
        last_used_at is None or last_used_at < now - timedelta(seconds=TOUCH_SECONDS)
    ):
        async with db.write() as s:
            await s.exec(
                update(ApiToken).where(col(ApiToken.token_hash) == digest).values(last_used_at=now)
            )
    return principal


async def authenticate_password(
    db: Database, username: str, password: str, *, cost: int = DEFAULT_COST
) -> Principal | None:
    """The user, when the password is right; a weaker stored hash is replaced.

    Unknown and disabled users cost the same hash as known ones (passwords.check).
    """
    async with db.read() as s:
        user = (await s.exec(select(User).where(User.username == username))).first()
    stored = user.password_hash if user is not None and user.active else None
    if not await passwords.check_async(password, stored, cost):
        return None
    assert user is not None and user.id is not None and stored is not None
    if passwords.needs_rehash(stored, cost):
        new_hash = await passwords.hash_async(password, cost)
        async with db.write() as s:
            await s.exec(update(User).where(col(User.id) == user.id).values(password_hash=new_hash))
    return await load_principal(db, user.id)


async def revoke_token(db: Database, token: str) -> bool:
    async with db.write() as s:
        done = await s.exec(delete(ApiToken).where(col(ApiToken.token_hash) == token_hash(token)))
        return bool(done.rowcount)


async def revoke_tokens(db: Database, username: str, token_id: int | None = None) -> int:
    """Revoke one of a user's tokens (by id) or all of them; how many were revoked."""
    async with db.write() as s:
        user_id = (await s.exec(select(User.id).where(User.username == username))).first()
        if user_id is None:
            raise AuthError(f"no user {username!r}")
        query = delete(ApiToken).where(col(ApiToken.user_id) == user_id)
        if token_id is not None:
            query = query.where(col(ApiToken.id) == token_id)
        done = await s.exec(query)
        return int(done.rowcount)


async def set_active(db: Database, username: str, active: bool) -> None:
    """Disable (every token stops at once: tokens are checked against the user) or enable."""
    async with db.write() as s:
        done = await s.exec(
            update(User).where(col(User.username) == username).values(active=active)
        )
        if not done.rowcount:
            raise AuthError(f"no user {username!r}")


async def set_password(
    db: Database, username: str, password: str, cost: int = DEFAULT_COST
) -> None:
    new_hash = await passwords.hash_async(password, cost)
    async with db.write() as s:
        done = await s.exec(
            update(User).where(col(User.username) == username).values(password_hash=new_hash)
        )
        if not done.rowcount:
            raise AuthError(f"no user {username!r}")


async def create_user(
    db: Database,
    username: str,
    *,
    role: Role,
    teams: list[str],
    password: str | None = None,
    display_name: str = "",
    phone_extension: str | None = None,
    password_cost: int = DEFAULT_COST,
) -> User:
    """Teams are created when missing: naming a team is how one starts a team."""
    async with db.write() as s:
        exists = (await s.exec(select(User.id).where(User.username == username))).first()
        if exists is not None:
            raise AuthError(f"user {username!r} already exists")
        user = User(
            username=username,
            display_name=display_name or username,
            role=role.value,
            phone_extension=phone_extension,
            password_hash=hash_password(password, password_cost) if password else None,
        )
        s.add(user)
        await s.flush()
        assert user.id is not None
        for name in teams:
            s.add(UserTeam(user_id=user.id, team_id=await team_id(s, name)))
        return user


async def issue_token(db: Database, username: str, name: str = "") -> str:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    async with db.write() as s:
        user_id = (await s.exec(select(User.id).where(User.username == username))).first()
        if user_id is None:
            raise AuthError(f"no user {username!r}")
        s.add(ApiToken(user_id=user_id, token_hash=token_hash(token), name=name))
    return token


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: int
    name: str
    created_at: datetime
    last_used_at: datetime | None


async def list_tokens(db: Database, username: str) -> list[TokenInfo]:
    """A user's tokens (never the token: only its hash is stored), oldest first."""
    async with db.read() as s:
        user_id = (await s.exec(select(User.id).where(User.username == username))).first()
        if user_id is None:
            raise AuthError(f"no user {username!r}")
        rows = await s.exec(
            select(ApiToken.id, ApiToken.name, ApiToken.created_at, ApiToken.last_used_at)
            .where(ApiToken.user_id == user_id)
            .order_by(col(ApiToken.id))
        )
        return [TokenInfo(*row) for row in rows.all()]
