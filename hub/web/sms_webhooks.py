"""POST /webhooks/twilio/sms: inbound SMS from Twilio (see channels/sms)."""

from __future__ import annotations

from aiohttp import web

routes = web.RouteTableDef()
