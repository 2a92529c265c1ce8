"""Frames into `event_log`, with each frame's data as it was encoded for its clients.

The rows of a flush are one statement. Their `data` and `users` go as JSON text
the stream already has (Frame.data_text), so nothing is encoded twice: through
Core's JSON type, the rows' encoding and per-row bind work was ~15 % of the
event stream's CPU.

- SQLite: an INSERT whose data binds are plain text (a JSON column is text
  there), deferred into the transaction's next trip (sqlite_driver.defer_many).
- PostgreSQL: one INSERT … SELECT FROM unnest(arrays), the text cast to json.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ARRAY, Integer, Text, bindparam, insert, text
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.store.columns import UTCDateTime
from hub.store.db import is_postgres
from hub.store.sqlite_driver import defer_many
from hub.store.tables import event_log_t

if TYPE_CHECKING:
    from hub.events.clients import Frame

# Built once: defer_many caches its compiled form per statement object.
_SQLITE = insert(event_log_t).values(
    data=bindparam("data", type_=Text()), users=bindparam("users", type_=Text())
)

_PG = text(
    "INSERT INTO event_log (id, at, kind, data, team_id, users)"
    " SELECT t.id, :at, t.kind, CAST(t.data AS JSON), t.team_id, CAST(t.users AS JSON)"
    " FROM unnest(:ids, :kinds, :datas, :teams, :users) AS t(id, kind, data, team_id, users)"
).bindparams(
    bindparam("at", type_=UTCDateTime()),
    bindparam("ids", type_=ARRAY(Integer())),
    bindparam("kinds", type_=ARRAY(Text())),
    bindparam("datas", type_=ARRAY(Text())),
    bindparam("teams", type_=ARRAY(Integer())),
    bindparam("users", type_=ARRAY(Text())),
)


def _users(frame: Frame) -> str | None:
    return None if frame.users is None else json.dumps(sorted(frame.users))


async def store_frames(conn: AsyncConnection, frames: list[Frame], at: datetime) -> None:
    """Insert numbered `frames` (ids set) as event_log rows stamped `at`."""
    if not frames:
        return
    if is_postgres(conn):
        await conn.execute(
            _PG,
            {
                "at": at,
                "ids": [f.id for f in frames],
                "kinds": [f.kind for f in frames],
                "datas": [f.data_text for f in frames],
                "teams": [f.team_id for f in frames],
                "users": [_users(f) for f in frames],
            },
        )
        return
    # Deferred: on SQLite the rows go in the trip of the transaction's COMMIT (or
    # its next statement), bound in bulk.
    await defer_many(
        conn,
        _SQLITE,
        [
            {
                "id": f.id,
                "at": at,
                "kind": f.kind,
                "data": f.data_text,
                "team_id": f.team_id,
                "users": _users(f),
            }
            for f in frames
        ],
    )
