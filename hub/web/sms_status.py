"""POST /webhooks/twilio/sms/status: Twilio's delivery status callbacks."""

from __future__ import annotations

from aiohttp import web

routes = web.RouteTableDef()
