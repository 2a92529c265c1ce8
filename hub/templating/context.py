"""What a template may name about its recipient, read for many recipients at once.

One query per kind of data for a whole batch (customers with their owners,
then identities), never one per recipient: a campaign renders thousands.

Names (all strings except `custom`; "" when unknown, so that
`{{ first_name | default("Kundin, Kunde") }}` takes the fallback):
customer_id, name, first_name, last_name, salutation, company, city,
postal_code, country, industry, owner_name, email, phone, custom (a dict of
the customer's custom fields). The sender adds `unsubscribe_url` (see
hub/subscriptions/links.py) to marketing mail.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.store.models import IdentityKind
from hub.store.tables import customer_t, identity_t, user_t

c = customer_t.c

_CUSTOMERS = (
    select(
        c.id,
        c.name,
        c.company,
        c.city,
        c.postal_code,
        c.country,
        c.industry,
        c.custom,
        user_t.c.display_name,
        user_t.c.username,
    )
    .outerjoin(user_t, user_t.c.id == c.owner_id)
    .where(c.id.in_(bindparam("ids", expanding=True)))
)
# Deliverable first, then primary, then oldest: the address a message would go to.
_IDENTITIES = (
    select(identity_t.c.customer_id, identity_t.c.kind, identity_t.c.value)
    .where(identity_t.c.customer_id.in_(bindparam("ids", expanding=True)))
    .order_by(
        identity_t.c.customer_id,
        identity_t.c.undeliverable_at.is_not(None),
        identity_t.c.primary.desc(),
        identity_t.c.id,
    )
)
# Custom fields that, when present, win over what is derived from `name`.
_NAME_FIELDS = ("salutation", "first_name", "last_name")
BATCH = 500  # ids per IN list (SQLite's variable limit is far above; keeps plans simple)


def split_name(name: str) -> tuple[str, str]:
    """("Anna Maria", "Schmidt") from "Anna Maria Schmidt"; one word is a last name."""
    words = name.split()
    if not words:
        return "", ""
    if len(words) == 1:
        return "", words[0]
    return " ".join(words[:-1]), words[-1]


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


async def recipient_contexts(
    conn: AsyncConnection, customer_ids: Sequence[int]
) -> dict[int, dict[str, Any]]:
    """Per customer id the names above; ids with no customer are absent from the answer."""
    out: dict[int, dict[str, Any]] = {}
    ids = list(dict.fromkeys(customer_ids))
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        for row in await conn.execute(_CUSTOMERS, {"ids": chunk}):
            custom = row.custom if isinstance(row.custom, dict) else {}
            first, last = split_name(row.name or "")
            ctx: dict[str, Any] = {
                "customer_id": row.id,
                "name": row.name or "",
                "first_name": first,
                "last_name": last,
                "salutation": "",
                "company": row.company or "",
                "city": row.city or "",
                "postal_code": row.postal_code or "",
                "country": row.country or "",
                "industry": row.industry or "",
                "owner_name": (row.display_name or row.username or "") if row.username else "",
                "email": "",
                "phone": "",
                "custom": dict(custom),
            }
            for key in _NAME_FIELDS:
                if _text(custom.get(key)):
                    ctx[key] = _text(custom[key])
            out[row.id] = ctx
        for cid, kind, value in await conn.execute(_IDENTITIES, {"ids": chunk}):
            found = out.get(cid)
            key = "email" if kind == IdentityKind.EMAIL.value else "phone"
            if found is not None and not found[key]:
                found[key] = value
    return out
