"""Message templates in the database: a template and its versions, one per edit.

A version is never changed after it is written, so a campaign that sent
version 2 can always show what it sent. Parts are syntax-checked when saved
(a 422 naming the part and line), and which parts a channel takes is checked
too: an SMS has a body only, an email a subject and an HTML or text part.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.errors import Conflict, Invalid, NotFound
from hub.store.models import utcnow
from hub.store.tables import message_template_t, template_version_t
from hub.templating.render import TemplateError, TemplateParts, check

CHANNELS = ("email", "sms")
EMAIL_PARTS = ("subject", "html", "text")
t, v = message_template_t.c, template_version_t.c


@dataclass(frozen=True, slots=True)
class StoredTemplate:
    id: int
    name: str
    channel: str
    locale: str
    version: int
    parts: TemplateParts

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "channel": self.channel,
            "locale": self.locale,
            "version": self.version,
            **asdict(self.parts),
        }


def validate_parts(channel: str, parts: TemplateParts) -> None:
    """422 when the channel cannot carry these parts or a part does not compile."""
    if channel not in CHANNELS:
        raise Invalid(f"channel: must be one of {', '.join(CHANNELS)}")
    if channel == "sms":
        extra = [p for p in EMAIL_PARTS if getattr(parts, p)]
        if extra:
            raise Invalid(f"{', '.join(extra)}: an SMS template has a body only")
        if not parts.body.strip():
            raise Invalid("body: an SMS template needs a body")
    else:
        if parts.body:
            raise Invalid("body: an email template has subject, html and text instead")
        if not parts.subject.strip():
            raise Invalid("subject: an email template needs a subject")
        if not (parts.html.strip() or parts.text.strip()):
            raise Invalid("html, text: an email template needs an HTML or a text part")
    try:
        check(parts)
    except TemplateError as exc:
        raise Invalid(exc.reason) from None


async def _next_version(conn: AsyncConnection, template_id: int) -> int:
    newest = await conn.execute(select(func.max(v.version)).where(v.template_id == template_id))
    return int(newest.scalar() or 0) + 1


async def _insert_version(
    conn: AsyncConnection, template_id: int, parts: TemplateParts, created_by: int | None
) -> int:
    version = await _next_version(conn, template_id)
    await conn.execute(
        template_version_t.insert().values(
            template_id=template_id,
            version=version,
            created_by=created_by,
            created_at=utcnow(),
            **asdict(parts),
        )
    )
    return version


async def create_template(
    conn: AsyncConnection,
    *,
    name: str,
    channel: str,
    locale: str,
    parts: TemplateParts,
    created_by: int | None,
) -> StoredTemplate:
    validate_parts(channel, parts)
    exists = await conn.execute(select(t.id).where(t.name == name))
    if exists.first() is not None:
        raise Conflict(f"a template named {name!r} exists; add a version to it instead")
    try:
        template_id = (
            await conn.execute(
                message_template_t.insert()
                .values(name=name, channel=channel, locale=locale, created_at=utcnow())
                .returning(t.id)
            )
        ).scalar_one()
    except IntegrityError:  # a concurrent create of the same name won
        raise Conflict(f"a template named {name!r} exists") from None
    version = await _insert_version(conn, template_id, parts, created_by)
    return StoredTemplate(template_id, name, channel, locale, version, parts)


async def add_version(
    conn: AsyncConnection, template_id: int, parts: TemplateParts, created_by: int | None
) -> StoredTemplate:
    head = await get_template(conn, template_id)
    validate_parts(head.channel, parts)
    version = await _insert_version(conn, template_id, parts, created_by)
    return StoredTemplate(head.id, head.name, head.channel, head.locale, version, parts)


def _parts(row: Any) -> TemplateParts:
    return TemplateParts(subject=row.subject, html=row.html, text=row.text, body=row.body)


async def get_template(
    conn: AsyncConnection, template_id: int, version: int | None = None
) -> StoredTemplate:
    """The template at `version` (None: the newest); NotFound for either missing."""
    query = (
        select(t.id, t.name, t.channel, t.locale, v.version, v.subject, v.html, v.text, v.body)
        .join(template_version_t, v.template_id == t.id)
        .where(t.id == template_id)
    )
    if version is not None:
        query = query.where(v.version == version)
    row = (await conn.execute(query.order_by(v.version.desc()).limit(1))).first()
    if row is None:
        what = f"template {template_id}" + (f" version {version}" if version else "")
        raise NotFound(f"no {what}")
    return StoredTemplate(row.id, row.name, row.channel, row.locale, row.version, _parts(row))


async def template_by_name(conn: AsyncConnection, name: str) -> StoredTemplate | None:
    found = (await conn.execute(select(t.id).where(t.name == name))).scalar()
    return None if found is None else await get_template(conn, found)


async def list_templates(conn: AsyncConnection) -> list[dict[str, Any]]:
    newest = (
        select(v.template_id, func.max(v.version).label("version"))
        .group_by(v.template_id)
        .subquery()
    )
    rows = await conn.execute(
        select(t.id, t.name, t.channel, t.locale, t.created_at, newest.c.version)
        .join(newest, newest.c.template_id == t.id)
        .order_by(t.name)
    )
    return [
        {
            "id": r.id,
            "name": r.name,
            "channel": r.channel,
            "locale": r.locale,
            "version": r.version,
            "created_at": r.created_at.isoformat(),
        }
        for r in rows
    ]


async def versions(conn: AsyncConnection, template_id: int) -> list[dict[str, Any]]:
    rows = await conn.execute(
        select(v.version, v.created_by, v.created_at)
        .where(v.template_id == template_id)
        .order_by(v.version)
    )
    return [
        {"version": r.version, "created_by": r.created_by, "created_at": r.created_at.isoformat()}
        for r in rows
    ]


def parts_from(data: Mapping[str, Any]) -> TemplateParts:
    return TemplateParts(**{k: str(data.get(k) or "") for k in ("subject", "html", "text", "body")})
