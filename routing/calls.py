"""The call state machine: ringing → answered → ended, ringing → missed.

Pure: the hub keeps each call's `CallRecord` and asks `advance` what one more
provider event makes of it. Providers send duplicates and out of order
(sipgate's answer push can overtake or trail its hangup), so every event
applies to whatever state the call is in:

- a second newCall changes nothing (it may add agents it rings at);
- an answer after the hangup keeps the state but records who answered;
- a hangup for a call never seen still makes a record (ended when the
  hangup names who answered, else missed).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from datetime import datetime

from channels.base import CallCause, CallEvent, CallEventKind

# Words PBX systems send for a caller who hides the number; logged, never matched.
ANONYMOUS = frozenset({"", "anonymous", "unknown", "restricted", "private", "withheld"})


class CallState(enum.StrEnum):
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"
    MISSED = "missed"


FINAL = frozenset({CallState.ENDED, CallState.MISSED})


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
    def wait_seconds(self) -> int | None:
        end = self.answered_at or self.ended_at
        return None if end is None else max(0, round((end - self.started_at).total_seconds()))

    @property
    def talk_seconds(self) -> int | None:
        if self.answered_at is None or self.ended_at is None:
            return None
        return max(0, round((self.ended_at - self.answered_at).total_seconds()))


def is_anonymous(number: str) -> bool:
    return number.strip().lower().lstrip("+") in ANONYMOUS


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
            # Late: the state stays, but who took the call is worth keeping.
            answered_at = record.answered_at or at
            if record.ended_at is not None:
                answered_at = min(answered_at, record.ended_at)
            return dataclasses.replace(
                record, answered_by=event.answered_by, answered_at=answered_at
            )
        return record
    # HANGUP
    if record.state in FINAL:
        return record
    cause = (event.cause or CallCause.NORMAL).value
    answered_by = record.answered_by or event.answered_by
    if record.state is CallState.ANSWERED or answered_by:
        return dataclasses.replace(
            record,
            state=CallState.ENDED,
            ended_at=at,
            cause=cause,
            answered_by=answered_by,
            answered_at=record.answered_at or at,
        )
    return dataclasses.replace(record, state=CallState.MISSED, ended_at=at, cause=cause)
