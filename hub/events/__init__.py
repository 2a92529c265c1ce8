"""Typed event kinds and the in-process bus."""

from hub.events.bus import Event, EventBus, Subscription
from hub.events.kinds import EventKind

__all__ = ["Event", "EventBus", "EventKind", "Subscription"]
