"""The default templates shipped in the top-level `templates/` folder (layout: its README)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncConnection

from hub.templating.render import TemplateParts
from hub.templating.store import add_version, create_template, template_by_name

log = logging.getLogger(__name__)

# The repository's templates/ (an editable install, the way crmhub is run here);
# other installs pass --dir to `crmhub template import-defaults`.
DEFAULTS_DIR = Path(__file__).resolve().parents[2] / "templates"
PART_FILES = {"subject": "subject.txt", "html": "html.html", "text": "text.txt", "body": "body.txt"}
# Read from files at use, never imported: system mail, not a marketing template.
SYSTEM_TEMPLATES = frozenset({"signup-confirmation"})


@dataclass(frozen=True, slots=True)
class DefaultTemplate:
    name: str  # "<template>-<locale>"
    channel: str
    locale: str
    parts: TemplateParts


def read_parts(folder: Path) -> TemplateParts:
    found = {}
    for part, filename in PART_FILES.items():
        path = folder / filename
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        # An editor's final newline is not part of a subject or an SMS.
        found[part] = text.rstrip("\n") if part in ("subject", "body") else text
    return TemplateParts(**found)


def load_defaults(root: Path = DEFAULTS_DIR, *, system: bool = False) -> list[DefaultTemplate]:
    out = []
    if not root.is_dir():
        raise FileNotFoundError(f"no templates folder at {root}")
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if (folder.name in SYSTEM_TEMPLATES) != system:
            continue
        for locale_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
            parts = read_parts(locale_dir)
            channel = "sms" if parts.body else "email"
            out.append(
                DefaultTemplate(f"{folder.name}-{locale_dir.name}", channel, locale_dir.name, parts)
            )
    return out


def system_template(name: str, locale: str, root: Path = DEFAULTS_DIR) -> TemplateParts:
    """A system mail's parts in `locale`, falling back to English."""
    for loc in (locale, "en"):
        folder = root / name / loc
        if folder.is_dir():
            return read_parts(folder)
    raise FileNotFoundError(f"no template {name} in {root}")


async def import_defaults(
    conn: AsyncConnection, root: Path = DEFAULTS_DIR, *, update: bool = False
) -> dict[str, str]:
    """Store each default as a database template; name -> "created", "updated" or "kept"."""
    result = {}
    for default in load_defaults(root):
        existing = await template_by_name(conn, default.name)
        if existing is None:
            await create_template(
                conn,
                name=default.name,
                channel=default.channel,
                locale=default.locale,
                parts=default.parts,
                created_by=None,
            )
            result[default.name] = "created"
        elif update and existing.parts != default.parts and existing.channel == default.channel:
            await add_version(conn, existing.id, default.parts, None)
            result[default.name] = "updated"
        else:
            result[default.name] = "kept"
    return result
