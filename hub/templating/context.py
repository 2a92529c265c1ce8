"""What a template may name about its recipient, read for many recipients at once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection


async def recipient_contexts(
    conn: AsyncConnection, customer_ids: Sequence[int]
) -> dict[int, dict[str, Any]]:
    """Per customer id: name, first_name, last_name, salutation, company, owner_name,
    custom, email, phone. Missing customers are absent from the answer."""
    raise NotImplementedError  # filled in below in this branch
