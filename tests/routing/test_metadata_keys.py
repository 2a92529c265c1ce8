"""The named keys that share one stored JSON object: an interaction's metadata.

Contact metadata (set by channels), decision meta (set by routing steps) and
the hub's own answer key are merged into one object per interaction, so a
value used by two of them would let one silently overwrite the other.
"""

from __future__ import annotations

from channels.base import MetaKey
from hub.ingest.context import REPLY_KEY
from routing.base import DecisionKey


def test_metadata_decision_and_hub_keys_never_collide() -> None:
    channel_keys = {k.value for k in MetaKey}
    decision_keys = {k.value for k in DecisionKey}
    assert len(channel_keys) == len(MetaKey) and len(decision_keys) == len(DecisionKey)
    assert channel_keys.isdisjoint(decision_keys)
    assert REPLY_KEY not in channel_keys | decision_keys


def test_keys_are_their_plain_strings_when_stored_or_compared() -> None:
    import json

    stored = json.loads(json.dumps({MetaKey.UID: 7, DecisionKey.THROTTLED: True}))
    assert stored == {"uid": 7, "throttled": True}
    assert stored[MetaKey.UID] == 7  # and read back by name
