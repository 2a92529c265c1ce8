"""SMS keywords (STOP / START / HELP and their configured translations).

Carriers and Twilio treat these words as commands, and customers expect the
same from us: a STOP must take effect at once and be provable later, so the
step records a consent change (written in the same transaction as the
message) and answers on the same channel. The word lists and answers come
from config as plain values; routing knows nothing about Twilio.
"""

from __future__ import annotations

from collections.abc import Iterable

from channels.base import Channel, InboundContact
from routing.base import ConsentChange, Decision, DecisionKey, RoutingContext

OPTED_OUT = "opted_out"
OPTED_IN = "opted_in"


def _table(words: Iterable[str], kind: str) -> dict[str, tuple[str, str]]:
    return {w.strip().casefold(): (kind, w.strip().upper()) for w in words if w.strip()}


class SmsKeywords:
    """A whole-body keyword (trimmed, any case) changes SMS consent and/or answers.

    Only the whole body counts: "stop the delivery on Monday" is a message
    for an agent, not an opt-out. The message still goes on through
    threading, so the keyword is part of the conversation's history.
    """

    name = "sms_keywords"
    channels = frozenset({Channel.SMS})
    description = "STOP/START/HELP (and translations) -> consent change and an answer"

    def __init__(
        self,
        *,
        opt_out: Iterable[str],
        opt_in: Iterable[str],
        help: Iterable[str],
        opt_out_text: str,
        opt_in_text: str,
        help_text: str,
        purpose: str = "marketing",
    ) -> None:
        # Later lists win on a word configured twice; opt-out is applied last
        # on purpose, so an ambiguous word errs on the side of not messaging.
        self._words = {
            **_table(help, "help"),
            **_table(opt_in, OPTED_IN),
            **_table(opt_out, OPTED_OUT),
        }
        self._answers = {OPTED_OUT: opt_out_text, OPTED_IN: opt_in_text, "help": help_text}
        self._purpose = purpose

    async def process(
        self, contact: InboundContact, decision: Decision, ctx: RoutingContext
    ) -> None:
        if contact.channel not in self.channels:  # run alone, outside its pipeline
            return
        found = self._words.get(contact.text.strip().casefold())
        if found is None:
            return
        kind, word = found
        decision.meta[DecisionKey.KEYWORD] = word
        if kind != "help":
            decision.consent = ConsentChange(
                Channel.SMS.value, kind, f"sms keyword {word}", self._purpose
            )
        answer = self._answers[kind]
        decision.reply = answer or None
