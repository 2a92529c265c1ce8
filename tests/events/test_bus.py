"""The bus: bounded per subscriber, and a subscriber that fell behind is told how much it lost."""

from __future__ import annotations

from channels.base import Direction
from hub.events import Event, EventBus, EventKind
from hub.events.kinds import interaction_created


def numbered(n: int) -> Event:
    return Event("test.n", {"n": n})


async def test_a_slow_subscriber_loses_its_oldest_events_and_is_told_how_many() -> None:
    bus = EventBus(queue_size=3)
    async with bus.subscribe() as slow, bus.subscribe() as fast:
        kept_up = []
        for n in range(7):
            bus.publish(numbered(n))
            kept_up.append(fast.get_nowait().data["n"])
        assert slow.qsize() == 4  # 3 kept + the overflow notice
        got = [await slow.get() for _ in range(4)]
        assert slow.empty()
    assert [(e.kind, e.data) for e in got] == [
        (EventKind.BUS_OVERFLOW, {"dropped": 4}),
        ("test.n", {"n": 4}),
        ("test.n", {"n": 5}),
        ("test.n", {"n": 6}),
    ]
    assert got[0].team_id is None
    # The subscriber that kept up lost nothing and was told nothing.
    assert kept_up == [0, 1, 2, 3, 4, 5, 6]
    assert fast.empty()


async def test_the_overflow_count_starts_again_after_it_was_read() -> None:
    bus = EventBus(queue_size=1)
    async with bus.subscribe() as sub:
        for n in range(3):
            bus.publish(numbered(n))
        assert sub.get_nowait().data == {"dropped": 2}
        assert sub.get_nowait().data == {"n": 2}
        bus.publish(numbered(3))
        bus.publish(numbered(4))
        assert [sub.get_nowait().data for _ in range(2)] == [{"dropped": 1}, {"n": 4}]
        assert sub.empty()
    assert bus.subscriber_count == 0


def test_an_interaction_has_one_shape_in_both_directions() -> None:
    common = {
        "interaction_id": 1,
        "customer_id": 2,
        "conversation_id": 3,
        "channel": "sms",
        "sender": "+4930555",
        "recipient": "+4915111",
        "subject": "",
        "team_id": 4,
    }
    inbound = interaction_created(direction=Direction.IN, created_customer=True, **common)
    outbound = interaction_created(direction=Direction.OUT, delivery_status="queued", **common)
    assert inbound.kind == outbound.kind == "interaction.created"
    assert inbound.data.keys() == outbound.data.keys()
    assert (inbound.data["direction"], outbound.data["direction"]) == ("in", "out")
    assert outbound.data["delivery_status"] == "queued"
    assert inbound.team_id == outbound.team_id == 4
