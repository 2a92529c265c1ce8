"""The call state machine: ringing → answered → ended, ringing → missed.

Pure: the hub stores a call's `CallRecord` and asks `advance` what one more
provider event makes of it. Providers send duplicates and out of order
(sipgate's answer push can arrive after its hangup push), so every event
is applied to whatever state the call is in:

- a second newCall changes nothing (but may add phones it rings at);
- an answer after the hangup leaves the state, but keeps who answered;
- a hangup for a call never seen still makes a record (ended when it was
  cleared normally or someone answered, else missed).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from datetime import datetime

from channels.base import CallEvent, CallEventKind


class CallState(enum.StrEnum):
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"
    MISSED = "missed"


FINAL = frozenset({CallState.ENDED, CallState.MISSED})

# Provider hangup causes, in one vocabulary (sipgate, Twilio, generic PBX).
_CAUSES = {
    "normalclearing": "completed",
    "completed": "completed",
    "busy": "busy",
    "cancel": "canceled",
    "canceled": "canceled",
    "cancelled": "canceled",
    "noanswer": "no-answer",
    "no-answer": "no-answer",
    "congestion": "failed",
    "failed": "failed",
    "notfound": "failed",
    "forwarded": "forwarded",
}


def normal_cause(raw: str | None) -> str | None:
    if not raw:
        return None
    return _CAUSES.get(raw.strip().lower().replace("_", ""), raw.strip().lower()[:50])


@dataclass(frozen=True, slots=True)
class CallRecord:
    state: CallState
    started_at: datetime
    ringing: tuple[str, ...] = ()
    answered_by: str | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    cause: str | None = None

    @property
    def wait_seconds(self) -> float | None:
        end = self.answered_at or self.ended_at
        return None if end is None else max(0.0, (end - self.started_at).total_seconds())

    @property
    def talk_seconds(self) -> float | None:
        if self.answered_at is None or self.ended_at is None:
            return None
        return max(0.0, (self.ended_at - self.answered_at).total_seconds())


def advance(record: CallRecord | None, event: CallEvent) -> CallRecord:
    at = event.occurred_at
    if record is None:
        record = CallRecord(CallState.RINGING, started_at=at, ringing=tuple(event.users))
        if event.kind is CallEventKind.NEW_CALL:
            return record
    if event.kind is CallEventKind.NEW_CALL:
        ringing = tuple(dict.fromkeys((*record.ringing, *event.users)))
        return dataclasses.replace(record, ringing=ringing)
    if event.kind is CallEventKind.ANSWER:
        if record.state is CallState.RINGING:
            return dataclasses.replace(
                record, state=CallState.ANSWERED, answered_by=event.answered_by, answered_at=at
            )
        if record.answered_by is None and event.answered_by:
            # Late: the state stays (it ended), but who took it is worth keeping.
            return dataclasses.replace(record, answered_by=event.answered_by, answered_at=at)
        return record
    # HANGUP
    if record.state in FINAL:
        return record
    cause = normal_cause(event.cause)
    # A normal clearing from "ringing" means the answer push was lost or is late:
    # someone talked, so the call ended; cancel, busy, no-answer mean missed.
    talked = cause == "completed" or bool(event.answered_by)
    if record.state is CallState.ANSWERED or talked:
        return dataclasses.replace(
            record,
            state=CallState.ENDED,
            ended_at=at,
            cause=cause or "completed",
            answered_by=record.answered_by or event.answered_by,
            answered_at=record.answered_at or (at if event.answered_by else None),
        )
    return dataclasses.replace(record, state=CallState.MISSED, ended_at=at, cause=cause)
