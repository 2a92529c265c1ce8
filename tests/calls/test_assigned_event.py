"""A supervisor's reassignment publishes conversation.assigned once, after the commit."""

from __future__ import annotations

import pytest

from channels.base import Channel, InboundContact
from hub.events.bus import Event
from hub.runtime import Hub
from tests.support.api import Api

pytestmark = pytest.mark.db


async def test_reassignment_publishes_conversation_assigned(api: Api, hub: Hub) -> None:
    r = await hub.ingestor.ingest(InboundContact(Channel.SMS, "+491717777771", provider_id="A1"))
    seen: list[Event] = []
    original = hub.bus.publish

    def publish(event: Event) -> None:
        seen.append(event)
        original(event)

    hub.bus.publish = publish  # type: ignore[method-assign]
    path = f"/api/v1/conversations/{r.conversation_id}"
    body = {"assignee_id": api.user_ids["agent"]}
    assert (await api.call("PATCH", path, "sup", json=body))[0] == 200
    assert (await api.call("PATCH", path, "sup", json=body))[0] == 200  # no change: no event
    assert (await api.call("PATCH", path, "sup", json={"status": "pending"}))[0] == 200
    assigned = [e for e in seen if e.kind == "conversation.assigned"]
    assert [(e.data, e.team_id) for e in assigned] == [
        (
            {
                "conversation_id": r.conversation_id,
                "customer_id": r.customer_id,
                "assignee_id": api.user_ids["agent"],
            },
            r.team_id,
        )
    ]
