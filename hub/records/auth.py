"""Users, passwords and API tokens.

Passwords use scrypt from the standard library (memory-hard, no extra
dependency). API tokens are random and only their SHA-256 is stored, so a
database leak does not leak working tokens; a token is shown once, when made.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import update
from sqlmodel import col, select

from hub.records.teams import team_id
from hub.store.db import Database
from hub.store.models import ApiToken, Role, User, UserTeam, utcnow

TOKEN_PREFIX = "crm_"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


class AuthError(ValueError):
    pass


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    b64 = base64.b64encode
    return f"scrypt${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str | None) -> bool:
    if not stored or not stored.startswith("scrypt$"):
        return False
    _, salt_b64, digest_b64 = stored.split("$")
    digest = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt_b64), dklen=32, **_SCRYPT)
    return hmac.compare_digest(digest, base64.b64decode(digest_b64))


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


async def authenticate_token(db: Database, token: str) -> Principal | None:
    if not token.startswith(TOKEN_PREFIX):
        return None
    async with db.read() as s:
        user_id = (
            await s.exec(select(ApiToken.user_id).where(ApiToken.token_hash == token_hash(token)))
        ).first()
    if user_id is None:
        return None
    return await load_principal(db, user_id)


async def authenticate_password(db: Database, username: str, password: str) -> Principal | None:
    async with db.read() as s:
        user = (await s.exec(select(User).where(User.username == username))).first()
    if user is None or not user.active or not verify_password(password, user.password_hash):
        return None
    assert user.id is not None
    return await load_principal(db, user.id)


async def create_user(
    db: Database,
    username: str,
    *,
    role: Role,
    teams: list[str],
    password: str | None = None,
    display_name: str = "",
    phone_extension: str | None = None,
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
            password_hash=hash_password(password) if password else None,
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


async def touch_token(db: Database, token: str) -> None:
    async with db.write() as s:
        await s.exec(
            update(ApiToken)
            .where(col(ApiToken.token_hash) == token_hash(token))
            .values(last_used_at=utcnow())
        )
