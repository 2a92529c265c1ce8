"""Click-to-dial for the asking agent: checks, the provider request, the call log entry.

Refused before anything is placed: a customer the agent may not see (404),
one who opted out of phone contact or whose number was erased after an
opt-out (409), a number that is not a phone number (422).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import select

from channels.base import CallEvent, CallEventKind, CallProvider, Channel, Direction
from channels.voice.dial import DialFailed, Placed, dial_pbx, dial_twilio
from hub.calls.service import CallLog
from hub.errors import Conflict, Invalid
from hub.outbox.queue import opted_out
from hub.privacy.suppression import opted_out_before_erasure
from hub.records.access import Action, require
from hub.records.auth import Principal
from hub.records.customers import CustomerStore
from hub.records.identity import normalize_phone
from hub.runtime import Hub
from hub.store.models import IdentityKind
from hub.store.tables import identity_t, user_t


class CallIn(BaseModel):
    """Whom to call: a customer (their first phone number) or a number."""

    model_config = ConfigDict(extra="forbid")  # a typo is a 422, never ignored

    customer_id: int | None = Field(None, ge=1, le=2**31 - 1)  # 32-bit ids on PostgreSQL
    number: str | None = Field(None, min_length=3, max_length=50)

    @field_validator("number")
    @classmethod
    def _dialable(cls, value: str | None) -> str | None:
        # A number as people write one; anything else cannot be dialled.
        if value is not None and not re.fullmatch(r"[0-9+ ()/.\-]+", value):
            raise ValueError("must be a phone number (digits, +, spaces, ( ) / . -)")
        return value

    @model_validator(mode="after")
    def _one(self) -> CallIn:
        if (self.customer_id is None) == (self.number is None):
            raise ValueError("give exactly one of customer_id and number")
        return self


class DialUnavailable(Exception):
    """The provider could not place the call (502)."""


async def click_to_dial(hub: Hub, principal: Principal, body: CallIn) -> dict[str, Any]:
    require(principal, Action.WRITE_HISTORY)
    settings = hub.settings
    region = settings.identity.default_region
    async with hub.db.read() as s:
        conn = await s.connection()
        customer_id = body.customer_id
        if customer_id is not None:
            customer = await CustomerStore(s, principal, region).get(customer_id)
            customer_id = customer.id
            number = (
                await conn.execute(
                    select(identity_t.c.value)
                    .where(identity_t.c.customer_id == customer_id)
                    .where(identity_t.c.kind == IdentityKind.PHONE.value)
                    .order_by(identity_t.c.id)
                )
            ).scalar()
            if number is None:
                raise Invalid("the customer has no phone number")
        else:
            identity = normalize_phone(body.number or "", region)
            if not identity.verified:
                raise Invalid(f"number: {body.number!r} is not a phone number")
            number = identity.value
            customer_id = (
                await conn.execute(
                    select(identity_t.c.customer_id)
                    .where(identity_t.c.kind == IdentityKind.PHONE.value)
                    .where(identity_t.c.value == number)
                )
            ).scalar()
        if customer_id is not None and await opted_out(conn, customer_id, Channel.PHONE):
            raise Conflict("the customer opted out of phone contact; nothing was dialled")
        key = settings.privacy.suppression_key
        if await opted_out_before_erasure(conn, key, "phone", number):
            raise Conflict("the number opted out before its data was erased; nothing was dialled")
        me = (
            await conn.execute(
                select(user_t.c.username, user_t.c.phone_extension, user_t.c.pbx_id).where(
                    user_t.c.id == principal.user_id
                )
            )
        ).one()
    voice = settings.voice
    try:
        if voice.click_to_dial == "pbx":
            provider = CallProvider.PBX
            extension = me.phone_extension or me.pbx_id or me.username
            placed: Placed = await dial_pbx(
                voice.pbx, extension=extension, user=me.username, customer=number
            )
            agent = extension
        else:
            provider = CallProvider.TWILIO
            agent = f"client:{me.username}"
            placed = await dial_twilio(voice.twilio, voice.public_url, agent, number)
    except DialFailed as exc:
        raise DialUnavailable(str(exc)) from exc
    event = CallEvent(
        provider=provider,
        call_id=placed.call_id,
        kind=CallEventKind.NEW_CALL,
        from_number=placed.from_number,
        to_number=number,
        direction=Direction.OUT,
        users=(agent.removeprefix("client:"),),
        metadata={"click_to_dial": True, "agent_id": principal.user_id},
    )
    await CallLog(hub).handle(event)
    return {"provider": provider.value, "call_id": placed.call_id, "to": number}
