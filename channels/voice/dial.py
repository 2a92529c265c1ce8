"""Click-to-dial: ring the agent, then bridge them to the customer.

Twilio: one Calls API request (the real twilio library) that calls the
agent's client (or phone) and, once they pick up, dials the customer with
our number as caller id; its status callbacks log it like any call. The
generic PBX: one POST to the configured URL template.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.rest import Client
from twilio.twiml.voice_response import Dial, VoiceResponse

from channels.sms.outbound import _HeaderAuthHttpClient
from channels.voice.config import PbxConfig, TwilioVoiceConfig

STATUS_PATH = "/webhooks/twilio/voice/status"


class DialFailed(Exception):
    """The provider refused or could not be reached; nothing was placed."""


@dataclass(frozen=True, slots=True)
class Placed:
    call_id: str
    from_number: str  # ours, as the customer sees it


def bridge_twiml(customer: str, caller_id: str) -> str:
    response = VoiceResponse()
    dial = Dial(caller_id=caller_id or None)
    dial.number(customer)
    response.append(dial)
    return str(response)


async def dial_twilio(
    config: TwilioVoiceConfig,
    public_url: str,
    agent: str,
    customer: str,
    timeout: float = 15.0,  # noqa: ASYNC109
) -> Placed:
    """`agent`: "client:<identity>" or a phone number; `customer` in E.164."""
    if not (config.account_sid and config.from_number):
        raise DialFailed("voice.twilio.account_sid and from_number are needed to dial")
    http = _HeaderAuthHttpClient(timeout=timeout)
    try:
        client = Client(config.account_sid, config.auth_token.get_secret_value(), http_client=http)
        client.api.base_url = config.api_base_url.rstrip("/")
        created = await client.calls.create_async(
            to=agent,
            from_=config.from_number,
            twiml=bridge_twiml(customer, config.from_number),
            status_callback=public_url.rstrip("/") + STATUS_PATH,
            status_callback_event=["initiated", "ringing", "answered", "completed"],
        )
    except (TwilioRestException, TwilioServiceException) as exc:
        raise DialFailed(f"twilio refused the call: HTTP {exc.status}") from exc
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise DialFailed(f"twilio unreachable: {type(exc).__name__}") from exc
    finally:
        await http.close()
    return Placed(str(created.sid), config.from_number)


async def dial_pbx(
    config: PbxConfig,
    *,
    extension: str,
    user: str,
    customer: str,
    timeout: float = 15.0,  # noqa: ASYNC109
) -> Placed:
    if not config.dial_url:
        raise DialFailed("voice.pbx.dial_url is not configured")
    url = config.dial_url.format(
        extension=quote(extension, safe=""), user=quote(user, safe=""), number=quote(customer)
    )
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.post(url, json={"from": extension, "to": customer, "user": user}) as resp,
        ):
            text = await resp.text()
            if resp.status >= 300:
                raise DialFailed(f"the PBX answered HTTP {resp.status}")
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise DialFailed(f"the PBX is unreachable: {type(exc).__name__}") from exc
    # A PBX that names the call lets its later webhooks find this log entry.
    call_id = ""
    try:
        data = json.loads(text) if text.strip() else {}
        if isinstance(data, dict) and isinstance(data.get("callId"), str):
            call_id = data["callId"][:200]
    except ValueError:
        pass
    return Placed(call_id or f"crmhub-{uuid.uuid4().hex}", extension)
