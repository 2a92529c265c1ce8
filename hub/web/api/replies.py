"""POST /api/v1/conversations/{id}/reply: answer the customer on the conversation's channel."""

from __future__ import annotations

from aiohttp import web
from pydantic import Field

from hub.outbox.replies import reply
from hub.privacy.audit import Entry, write_in
from hub.records.schemas import ReplyIn
from hub.web.auth import HUB, principal_of
from hub.web.params import path_int, read_body
from hub.web.serialize import interaction_json

routes = web.RouteTableDef()


class ReplyBody(ReplyIn):
    """The reply's body: `text`, and for email an optional `subject`."""

    # Replaces "Re: <conversation subject>" on email (an SMS has none). One
    # line: a line break in a header would let the body write headers.
    subject: str | None = Field(None, max_length=998, pattern=r"^[^\r\n]*$")


@routes.post("/api/v1/conversations/{id}/reply")
async def post_reply(request: web.Request) -> web.Response:
    """202: queued, not yet sent; delivery_status follows in the conversation's history."""
    body = await read_body(request, ReplyBody)
    hub = request.app[HUB]
    async with hub.db.write() as s:
        interaction, event = await reply(
            s,
            principal_of(request),
            hub.settings,
            hub.senders,
            path_int(request),
            body.text,
            body.subject,
        )
        # Who sent what to whom, committed with the message it records.
        await write_in(
            await s.connection(),
            Entry(
                principal_of(request).user_id or None,
                "reply",
                "conversation",
                interaction.conversation_id,
                interaction.customer_id,
                request.remote,
                {"channel": interaction.channel, "interaction_id": interaction.id},
            ),
        )
    hub.bus.publish(event)
    hub.dispatcher.wake()  # after the commit, so the dispatcher sees the row
    return web.json_response(interaction_json(interaction), status=202)
