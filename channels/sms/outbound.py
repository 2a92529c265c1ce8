"""Sending SMS through Twilio's REST API, with its errors sorted into retry or give up.

The twilio library's `AsyncTwilioHttpClient` (aiohttp) keeps this async. Twilio
offers no idempotency key for Messages, so a retry after a timeout may send a
second copy; the dispatcher (hub/outbox/dispatcher.py) owns that decision, this
module only says whether an error is worth retrying.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from channels.base import Channel, DeliveryResult, DeliveryState, OutboundMessage
from channels.sms.config import SmsConfig
from channels.sms.segments import BodyTooLong, check_body

log = logging.getLogger(__name__)

STATUS_CALLBACK_PATH = "/webhooks/twilio/sms/status"
ERROR_BODY_TOO_LONG = "body_too_long"
ERROR_NETWORK = "network"


def _temporary(status: int) -> bool:
    return status == 429 or status >= 500


class _HeaderAuthHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    """twilio 9 hands Basic auth to aiohttp as `BasicAuth`, deprecated since aiohttp 3.12
    and gone in 4; sending the header ourselves keeps the client working (and quiet)."""

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (twilio's signature)
        allow_redirects: bool = False,
    ) -> Any:
        if auth is not None:
            headers = {**(headers or {}), "Authorization": aiohttp.encode_basic_auth(*auth)}
        return await super().request(
            method, url, params, data, headers, None, timeout, allow_redirects
        )


class TwilioSmsSender:
    """The SMS channel's `send`: one `OutboundMessage` -> one Twilio Message.

    `metadata["status_callback_query"]`, when given, is appended to the status
    callback URL (the outbox row id), so a callback that overtakes our own
    record of the MessageSid still finds its message.
    """

    channel = Channel.SMS

    def __init__(self, config: SmsConfig, *, timeout: float = 30.0) -> None:
        if not config.account_sid or not (config.from_number or config.messaging_service_sid):
            raise ValueError("sms: account_sid and from_number or messaging_service_sid are needed")
        self.config = config
        self.timeout = timeout
        self.max_body_length = config.max_body_chars
        self.rate_per_second = config.rate_per_second
        self.concurrency = config.max_in_flight
        self._http: _HeaderAuthHttpClient | None = None
        self._client: Client | None = None

    @property
    def sender(self) -> str:
        """What the history shows as the sender: the service wins over the number."""
        return self.config.messaging_service_sid or self.config.from_number

    def _twilio(self) -> Client:
        # Built on first use: aiohttp's session wants a running event loop.
        if self._client is None:
            self._http = _HeaderAuthHttpClient(timeout=self.timeout)
            self._client = Client(
                self.config.account_sid, self.config.auth_token, http_client=self._http
            )
            # Every Domain joins its base_url with the resource path; tests use a fake.
            self._client.api.base_url = self.config.api_base_url.rstrip("/")
        return self._client

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
        self._http = self._client = None

    def _params(self, message: OutboundMessage) -> dict[str, Any]:
        callback = self.config.public_url.rstrip("/") + STATUS_CALLBACK_PATH
        query = message.metadata.get("status_callback_query")
        if query:
            callback += f"?{query}"
        params: dict[str, Any] = {
            "to": message.recipient,
            "body": message.text,
            "status_callback": callback,
        }
        if self.config.messaging_service_sid:
            params["messaging_service_sid"] = self.config.messaging_service_sid
        else:
            params["from_"] = self.config.from_number
        return params

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        try:
            check_body(message.text, self.max_body_length)
        except BodyTooLong as exc:
            return DeliveryResult(
                DeliveryState.FAILED, error_code=ERROR_BODY_TOO_LONG, error=str(exc)
            )
        try:
            created = await self._twilio().messages.create_async(**self._params(message))
        except (TwilioRestException, TwilioServiceException) as exc:
            # Twilio answers in its classic error JSON or in RFC 9457 problem
            # details, depending on the API; twilio raises a different class for each.
            status = int(exc.status)
            code = str(exc.code) if exc.code is not None else str(status)
            text = exc.msg if isinstance(exc, TwilioRestException) else exc.detail or exc.title
            state = DeliveryState.TEMPORARY_FAILURE if _temporary(status) else DeliveryState.FAILED
            log.info("twilio refused a message: HTTP %s code %s", status, code)
            return DeliveryResult(state, error_code=code, error=f"HTTP {status}: {text}")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.info("twilio unreachable: %r", exc)
            return DeliveryResult(
                DeliveryState.TEMPORARY_FAILURE,
                error_code=ERROR_NETWORK,
                error=f"{type(exc).__name__}: {exc}"[:500],
            )
        return DeliveryResult(DeliveryState.QUEUED, provider_id=str(created.sid))
