"""Retention: history older than N days is deleted or anonymised, per channel and direction.

Off while `privacy.retention` is empty. "anonymise" keeps the entry (that a
contact happened, when, on which channel: the statistics) and blanks what
it said and who it was with; "delete" removes it with its attachments
(their files go with the next `crmhub attachments sweep`). Raw mail released
from the quarantine into such an entry is deleted in both cases.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, delete, func, or_, select, update

from hub.config import RetentionRule
from hub.store.db import Database
from hub.store.models import utcnow
from hub.store.tables import attachment_t, interaction_t, quarantine_t

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RuleResult:
    rule: RetentionRule
    count: int


def _matching(rule: RetentionRule, now: datetime) -> ColumnElement[bool]:
    where = [interaction_t.c.occurred_at < now - timedelta(days=rule.days)]
    if rule.channel != "*":
        where.append(interaction_t.c.channel == rule.channel)
    if rule.direction != "*":
        where.append(interaction_t.c.direction == rule.direction)
    if rule.action == "anonymise":  # what is already blank is not counted again
        where.append(
            or_(
                interaction_t.c.text != "",
                interaction_t.c.subject != "",
                interaction_t.c.sender != "",
                interaction_t.c.recipient != "",
            )
        )
    return and_(*where)


async def apply_retention(
    db: Database, rules: list[RetentionRule], *, dry_run: bool, now: datetime | None = None
) -> list[RuleResult]:
    now = now or utcnow()
    results = []
    for rule in rules:
        where = _matching(rule, now)
        async with db.write() as s:
            conn = await s.connection()
            count = int(
                (
                    await conn.execute(select(func.count()).select_from(interaction_t).where(where))
                ).scalar_one()
            )
            if not dry_run and count:
                ids = select(interaction_t.c.id).where(where)
                await conn.execute(
                    delete(attachment_t).where(attachment_t.c.interaction_id.in_(ids))
                )
                # The raw message of an entry released from the quarantine says
                # everything the entry said: it goes whether the entry is deleted
                # or anonymised (deleting would only set its link NULL).
                await conn.execute(
                    delete(quarantine_t).where(quarantine_t.c.interaction_id.in_(ids))
                )
                if rule.action == "delete":
                    await conn.execute(delete(interaction_t).where(where))
                else:
                    await conn.execute(
                        update(interaction_t)
                        .where(where)
                        .values(text="", subject="", sender="", recipient="", meta={})
                    )
        results.append(RuleResult(rule, count))
    return results


async def run_periodically(db: Database, rules: list[RetentionRule], hours: float) -> None:
    """The hub's retention job: apply the rules now and then every `hours`."""
    while True:
        try:
            for result in await apply_retention(db, rules, dry_run=False):
                if result.count:
                    log.info(
                        "retention: %s %d %s/%s entries older than %d days",
                        "deleted" if result.rule.action == "delete" else "anonymised",
                        result.count,
                        result.rule.channel,
                        result.rule.direction,
                        result.rule.days,
                    )
        except Exception:
            log.exception("retention run failed; trying again at the next interval")
        await asyncio.sleep(hours * 3600)
