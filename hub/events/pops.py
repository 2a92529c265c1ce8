"""A batch's screen pops rendered once, before any client gets them.

A `call.ringing` frame goes out with the caller card (hub/records/lookup.py)
built for its recipient: the full card for users who may see the customer,
the name and team only for the others. Both depend only on whether the
recipient may see the customer, so the stream renders both for every pop of
a batch in one read (five statements for all of them) and keeps them on the
frame (`Frame.cache`, keyed by that yes/no); the websocket handler
(hub/web/api/events.py) sends the right one. A pop without a customer (a
withheld number) is left to the handler, which builds its card per recipient.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from hub.events.kinds import EventKind
from hub.records.lookup import PopCards, asked_number, pop_cards
from hub.store.db import Database

log = logging.getLogger(__name__)

VISIBLE, HIDDEN = True, False  # Frame.cache keys: may the recipient see the customer?
# Frame.cache key: the PopCards a call's group read in its own transaction, before the
# commit (hub/calls/advance.py), so the pop need not wait for a read of its own.
CARDS = "pop_cards"


def is_pop(frame: Any) -> bool:
    return bool(frame.kind == EventKind.CALL_RINGING) and isinstance(
        frame.data.get("customer_id"), int
    )


def pop_text(frame: Any, card: dict[str, Any]) -> str:
    body = frame.json()
    body["data"] = {**frame.data, "caller": card}
    return json.dumps(body)


async def render_pops(db: Database, frames: list[Any], region: str) -> None:
    """Fill `Frame.cache` of the batch's pops; on a database error leave them to the handler."""
    pops = [f for f in frames if is_pop(f) and VISIBLE not in f.cache]
    for f in pops:
        ready = f.cache.pop(CARDS, None)
        if isinstance(ready, PopCards):
            f.cache[VISIBLE] = pop_text(f, ready.known)
            f.cache[HIDDEN] = pop_text(f, ready.other_team)
    pops = [f for f in pops if VISIBLE not in f.cache]
    if not pops:
        return
    wanted = []
    for f in pops:
        number = f.data.get("from")
        wanted.append(
            (
                int(f.data["customer_id"]),
                asked_number(number, region) if isinstance(number, str) else {},
            )
        )
    try:
        async with db.read() as s:
            cards = await pop_cards(await s.connection(), wanted)
    except Exception:
        log.warning("pops not rendered ahead; each recipient's is built alone", exc_info=True)
        return
    for index, (f, (cid, _)) in enumerate(zip(pops, wanted, strict=True)):
        found = cards.get((index, cid))
        if found is not None:
            f.cache[VISIBLE] = pop_text(f, found.known)
            f.cache[HIDDEN] = pop_text(f, found.other_team)
