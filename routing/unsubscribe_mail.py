"""Mail to the List-Unsubscribe mailto: address opts its sender out of marketing email.

RFC 2369's mailto: target is the fallback of clients without one-click
(RFC 8058) support. Whoever writes to it asks to receive no more marketing
mail at the address they write from, as an SMS "STOP" does for a number, so
the step needs no token: the consent change is the sender's own (a forged
From can only silence the forged address, never reach anyone). The mail is
recorded in the history but opens no conversation and notifies nobody.
"""

from __future__ import annotations

from channels.base import Channel, InboundContact, MetaKey
from routing.base import ConsentChange, Decision, DecisionKey, RoutingContext

OPTED_OUT = "opted_out"
SOURCE = "mailto unsubscribe (List-Unsubscribe)"


class EmailUnsubscribe:
    name = "email_unsubscribe"
    channels = frozenset({Channel.EMAIL})
    description = "mail to the unsubscribe address -> email marketing opt-out, record only"

    def __init__(self, address: str) -> None:
        self.address = address.strip().lower()

    def _addressed(self, contact: InboundContact) -> bool:
        recipients = [
            contact.recipient,
            *contact.metadata.get(MetaKey.TO, []),
            *contact.metadata.get(MetaKey.CC, []),
        ]
        return any(isinstance(r, str) and r.strip().lower() == self.address for r in recipients)

    async def process(
        self, contact: InboundContact, decision: Decision, ctx: RoutingContext
    ) -> None:
        if not self.address or contact.channel not in self.channels:
            return
        if not self._addressed(contact):
            return
        decision.consent = ConsentChange(
            channel=Channel.EMAIL.value, state=OPTED_OUT, source=SOURCE
        )
        decision.record_only = True
        decision.stop = True
        decision.meta[DecisionKey.UNSUBSCRIBE] = True
