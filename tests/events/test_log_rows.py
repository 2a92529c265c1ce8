"""The stored event row and the texts sent to clients and other nodes are the frame's
own JSON, encoded once (hub/events/log_rows.py, Frame.data_text)."""

from __future__ import annotations

import json

from sqlalchemy import select

from hub.events.clients import Frame
from hub.events.log_rows import store_frames
from hub.store.db import Database
from hub.store.models import utcnow
from hub.store.tables import event_log_t

FRAMES = [
    Frame(1_000_001, "interaction.created", {"sender": "+4915112345678", "n": 3}, 7, None),
    # Quotes, a backslash, non-ASCII and nesting must come back as they went in.
    Frame(1_000_002, "call.ringing", {"name": 'Jörg "J" \\ Ø', "list": [1, {"a": None}]}, None,
          frozenset({5, 2})),
    Frame(1_000_003, "t.empty", {}, None, frozenset()),
    # A kind that needs escaping (kinds are ours, but the encoding must not care).
    Frame(1_000_004, 'k"ind\\ü', {"x": 1}, 3, None),
]  # fmt: skip


def test_texts_are_the_frames_json() -> None:
    for f in FRAMES:
        assert json.loads(f.text) == f.json()
        assert json.loads(f.node_text()) == {
            **f.json(),
            "team_id": f.team_id,
            "users": sorted(f.users) if f.users is not None else None,
        }
    # Byte for byte what json.dumps gives (clients and older nodes parse either).
    for f in FRAMES:
        assert f.text == json.dumps(f.json())
    assert Frame(None, "bus.overflow", {}, None, None).text == (
        '{"id": null, "kind": "bus.overflow", "data": {}}'
    )


async def test_stored_rows_read_back_as_sent(db: Database) -> None:
    at = utcnow()
    async with db.write() as s:
        await store_frames(await s.connection(), FRAMES, at)
    async with db.read() as s:
        rows = (
            await (await s.connection()).execute(
                select(event_log_t).where(event_log_t.c.id > 1_000_000).order_by(event_log_t.c.id)
            )
        ).all()
    assert [(r.id, r.kind, r.data, r.team_id, r.users, r.at) for r in rows] == [
        (1_000_001, "interaction.created", {"sender": "+4915112345678", "n": 3}, 7, None, at),
        (
            1_000_002,
            "call.ringing",
            {"name": 'Jörg "J" \\ Ø', "list": [1, {"a": None}]},
            None,
            [2, 5],
            at,
        ),
        (1_000_003, "t.empty", {}, None, [], at),
        (1_000_004, 'k"ind\\ü', {"x": 1}, 3, None, at),
    ]


def test_a_wrong_team_id_is_encoded_not_fatal() -> None:
    """A publisher that breaks `Event.team_id: int | None` must not stop the stream."""
    frame = Frame(7, "t.odd", {}, "abc", None)  # type: ignore[arg-type]
    assert json.loads(frame.node_text())["team_id"] == "abc"
