"""Sending email over SMTP through a pool of persistent connections.

Opening a connection (TCP, TLS, EHLO, AUTH) costs several round trips; a
campaign sends thousands of mails to one relay, so connections are kept open
and reused (issue 4 benchmarks this against a bare aiosmtplib loop). Every
error is sorted into "retry later" (4xx, network, timeout, disconnect) or
"give up" (5xx); the durable outbox does the retrying, never this module.

Contract for `SmtpSender.send(message)` (an `OutboundMessage`):

- From is `message.sender` or `config.from_address`; the envelope sender is
  always `config.from_address` (the address bounces come back to).
- `message.headers` may carry `Message-ID` (reuse the ID of an earlier
  attempt, so a retry is the same mail), `In-Reply-To`, `References`,
  `Reply-To` (the reply-token address) and any other header, copied as is.
  From, To, Subject, Date, MIME and List-Unsubscribe headers are ours and
  are not taken from there.
- `message.metadata["marketing"]` truthy marks marketing mail, which must
  carry `metadata["unsubscribe_url"]` (https://, the RFC 8058 one-click
  endpoint) and `metadata["unsubscribe_mailto"]` (mailto:); it is FAILED
  with error_code "no_unsubscribe" without them, never sent without a way out.
- `message.metadata["html"]`, when given, is sent as the HTML alternative of the text.
- The result's `provider_id` is the Message-ID, on failures too, so the
  caller can store it and pass it back on a retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage

import aiosmtplib

from channels.base import Channel, DeliveryResult, DeliveryState, OutboundMessage
from channels.email.compose import compose
from channels.email.smtp_config import SmtpConfig

log = logging.getLogger(__name__)

ERROR_NETWORK = "network"
ERROR_BAD_MESSAGE = "bad_message"
ERROR_NO_UNSUBSCRIBE = "no_unsubscribe"
ERROR_BODY_TOO_LONG = "body_too_long"

# Written by the sender itself; a caller's value for these is ignored.
_OWN_HEADERS = frozenset(
    name.lower()
    for name in (
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
    )
)


def _state_for(code: int) -> DeliveryState:
    """5xx is permanent; 4xx and anything unexpected is worth another try later."""
    return DeliveryState.FAILED if 500 <= code < 600 else DeliveryState.TEMPORARY_FAILURE


@dataclass(frozen=True, slots=True)
class RecipientRefusal:
    """The server's answer to RCPT TO for one recipient it did not accept."""

    code: int
    text: str

    @property
    def temporary(self) -> bool:
        return _state_for(self.code) is DeliveryState.TEMPORARY_FAILURE


@dataclass(frozen=True, slots=True)
class SmtpOutcome:
    """What became of one SMTP transaction, per recipient.

    SENT means the server took the message for every recipient in `accepted`;
    `refused` lists the others (a partial refusal still sends to the rest).
    `code` is the SMTP reply code as text, or "network" when no server answered.
    """

    state: DeliveryState
    accepted: tuple[str, ...] = ()
    refused: Mapping[str, RecipientRefusal] = field(default_factory=dict)
    code: str | None = None
    text: str = ""

    def result(self, provider_id: str | None) -> DeliveryResult:
        if self.state is DeliveryState.SENT:
            return DeliveryResult(self.state, provider_id=provider_id)
        return DeliveryResult(
            self.state, provider_id=provider_id, error_code=self.code, error=self.text or None
        )


def _all_refused(refused: Mapping[str, RecipientRefusal]) -> SmtpOutcome:
    # Retry when any refusal may pass later; the per-recipient codes tell which.
    temporary = any(r.temporary for r in refused.values())
    first = next(iter(refused.values()))
    state = DeliveryState.TEMPORARY_FAILURE if temporary else DeliveryState.FAILED
    return SmtpOutcome(state, refused=dict(refused), code=str(first.code), text=first.text)


@dataclass(slots=True)
class _Slot:
    """One place in the pool: a connection (or None, to be opened on next use)."""

    smtp: aiosmtplib.SMTP | None = None
    last_used: float = 0.0


class SmtpPool:
    """Up to `pool_size` persistent connections, handed out one sender at a time.

    The queue holds slots, not connections: a slot whose connection broke goes
    back empty and is reconnected by its next user, so a restarted server
    costs at most one failed send per slot, and an idle pool holds no sockets
    it never needed.
    """

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self.connections_opened = 0
        # LIFO: the most recently used (warm) connection goes out first, so a
        # trickle of sends keeps one connection busy instead of opening them all.
        self._slots: asyncio.LifoQueue[_Slot] = asyncio.LifoQueue()
        self._all = [_Slot() for _ in range(config.pool_size)]
        for slot in self._all:
            self._slots.put_nowait(slot)
        self._closed = False

    def _new_client(self) -> aiosmtplib.SMTP:
        cfg = self.config
        return aiosmtplib.SMTP(
            hostname=cfg.host,
            port=cfg.port,
            timeout=cfg.timeout,
            use_tls=cfg.tls == "ssl",
            # True: refuse to go on in clear when STARTTLS is configured but not offered.
            start_tls=cfg.tls == "starttls",
            validate_certs=cfg.validate_certs,
            local_hostname=cfg.local_hostname,
        )

    async def _ready(self, slot: _Slot) -> aiosmtplib.SMTP:
        """The slot's connection, checked when it idled long, else a new one."""
        smtp = slot.smtp
        if smtp is not None and smtp.is_connected:
            idle = time.monotonic() - slot.last_used
            if idle < self.config.noop_after_idle_seconds:
                return smtp
            try:
                await smtp.noop()
                return smtp
            except (aiosmtplib.SMTPException, OSError):
                log.info("smtp: idle connection went stale; reconnecting")
        self._drop(slot)
        smtp = self._new_client()
        try:
            await smtp.connect()
            if self.config.username:
                await smtp.login(self.config.username, self.config.password)
        except BaseException:
            smtp.close()
            raise
        self.connections_opened += 1
        slot.smtp = smtp
        return smtp

    @staticmethod
    def _drop(slot: _Slot) -> None:
        if slot.smtp is not None:
            slot.smtp.close()
        slot.smtp = None

    async def send(
        self, msg: EmailMessage | bytes, recipients: Sequence[str], sender: str
    ) -> SmtpOutcome:
        if self._closed:
            raise RuntimeError("smtp: the pool is closed")
        slot = await self._slots.get()
        clean = False
        try:
            outcome = await self._send_on(slot, msg, recipients, sender)
            clean = True
            return outcome
        finally:
            slot.last_used = time.monotonic()
            # Cancelled mid-command: the session state is unknown, start afresh.
            if not clean or (slot.smtp is not None and not slot.smtp.is_connected):
                self._drop(slot)
            self._slots.put_nowait(slot)

    async def _send_on(
        self, slot: _Slot, msg: EmailMessage | bytes, recipients: Sequence[str], sender: str
    ) -> SmtpOutcome:
        """One transaction; a kept connection the server closed meanwhile gets one fresh retry.

        The server hanging up on a connection we kept (restart, idle timeout)
        is noticed only when we write to it. Retrying at once on a new
        connection risks no more than the outbox's own retry would: RFC 5321
        accepts a duplicate when the connection drops before the final reply.
        """
        reused = slot.smtp is not None
        try:
            smtp = await self._ready(slot)
            if isinstance(msg, bytes):
                errors, _reply = await smtp.sendmail(sender, recipients, msg)
            else:
                errors, _reply = await smtp.send_message(msg, sender=sender, recipients=recipients)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = {r.recipient: RecipientRefusal(r.code, r.message) for r in exc.recipients}
            log.info("smtp: all recipients refused: %s", refused)
            return _all_refused(refused)
        except aiosmtplib.SMTPResponseException as exc:
            # MAIL/DATA/AUTH/greeting refused; aiosmtplib has reset the envelope,
            # so the connection stays usable unless the server hung up.
            log.info("smtp: server answered %s %s", exc.code, exc.message)
            return SmtpOutcome(_state_for(exc.code), code=str(exc.code), text=exc.message)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            self._drop(slot)
            if reused and isinstance(exc, ConnectionError):
                log.info("smtp: kept connection was closed (%r); reconnecting", exc)
                return await self._send_on(slot, msg, recipients, sender)
            log.info("smtp: %s:%s unreachable: %r", self.config.host, self.config.port, exc)
            return SmtpOutcome(
                DeliveryState.TEMPORARY_FAILURE,
                code=ERROR_NETWORK,
                text=f"{type(exc).__name__}: {exc}"[:500],
            )
        refused = {rcpt: RecipientRefusal(r.code, r.message) for rcpt, r in errors.items()}
        accepted = tuple(r for r in recipients if r not in refused)
        return SmtpOutcome(DeliveryState.SENT, accepted=accepted, refused=refused)

    async def close(self) -> None:
        """QUIT every open connection (bounded by the timeout), then refuse new sends."""
        self._closed = True
        for slot in self._all:
            smtp, slot.smtp = slot.smtp, None
            if smtp is None or not smtp.is_connected:
                continue
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                await smtp.quit(timeout=min(self.config.timeout, 5.0))
            smtp.close()


class MissingUnsubscribe(ValueError):
    """Marketing mail without both List-Unsubscribe targets (https and mailto)."""


class SmtpSender:
    """The email channel's `send`: one `OutboundMessage` -> one mail over the pool.

    Plugs into the outbox as a `Sender` (hub/outbox/queue.py); `send_mime` is the
    lower level for callers that build their own MIME or send to several
    recipients and need the per-recipient answer.
    """

    channel = Channel.EMAIL

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self.max_body_length = config.max_body_chars
        self.rate_per_second = config.rate_per_second
        self.concurrency = config.pool_size  # one send per pooled connection at a time
        self.pool = SmtpPool(config)

    @property
    def sender(self) -> str:
        """What the history shows as the sender."""
        return self.config.from_address

    def _unsubscribe(self, message: OutboundMessage) -> list[tuple[str, str]]:
        """The List-Unsubscribe headers marketing mail must carry; [] for other mail."""
        if not message.metadata.get("marketing"):
            return []
        url = str(message.metadata.get("unsubscribe_url") or "")
        mailto = str(message.metadata.get("unsubscribe_mailto") or "")
        if not url.startswith("https://") or not mailto.startswith("mailto:"):
            raise MissingUnsubscribe(
                "marketing mail needs metadata unsubscribe_url (https://) "
                "and unsubscribe_mailto (mailto:)"
            )
        return [
            ("List-Unsubscribe", f"<{url}>, <{mailto}>"),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ]

    def _headers(self, message: OutboundMessage) -> list[tuple[str, str]]:
        """Every header but the MIME ones, in the order they are written."""
        given = {name.lower(): value for name, value in message.headers.items()}
        message_id = given.get("message-id") or email.utils.make_msgid(domain=self.config.domain)
        headers = [
            ("Message-ID", message_id),
            ("Date", email.utils.format_datetime(datetime.now(UTC))),
            ("From", message.sender or self.config.from_address),
            ("To", message.recipient),
            ("Subject", message.subject),
        ]
        headers += [(n, v) for n, v in message.headers.items() if n.lower() not in _OWN_HEADERS]
        return headers + self._unsubscribe(message)

    def build_message(self, message: OutboundMessage) -> EmailMessage:
        """The MIME message for `message` (see the module docstring for the contract).

        Raises ValueError (a header with a line break, a bad address) or
        MissingUnsubscribe; both are the caller's bug, never worth a retry.
        """
        return self._build(message, self._headers(message))

    @staticmethod
    def _build(message: OutboundMessage, headers: list[tuple[str, str]]) -> EmailMessage:
        msg = EmailMessage()
        for name, value in headers:
            msg[name] = value
        # Quoted-printable keeps the body 7-bit: safe even through a relay
        # that does not offer 8BITMIME, and still readable in the raw source.
        msg.set_content(message.text, charset="utf-8", cte="quoted-printable")
        html = message.metadata.get("html")
        if html:
            # multipart/alternative: clients show the HTML, text-only ones the text.
            msg.add_alternative(str(html), subtype="html", charset="utf-8", cte="quoted-printable")
        return msg

    def wire_message(self, message: OutboundMessage) -> tuple[bytes | EmailMessage, str]:
        """What `send` hands to the pool, and its Message-ID: the bytes written by
        `compose` (channels/email/compose.py), or, for what compose leaves to the
        email package, the `EmailMessage`. Raises as `build_message`."""
        headers = self._headers(message)
        html = message.metadata.get("html")
        if message.recipient.isascii():  # else SMTPUTF8: aiosmtplib flattens for that
            raw = compose(headers, message.text, str(html) if html else None)
            if raw is not None:
                return raw, headers[0][1]
        msg = self._build(message, headers)
        return msg, str(msg["Message-ID"])

    async def send_mime(self, msg: EmailMessage | bytes, recipients: list[str]) -> SmtpOutcome:
        """Send a ready MIME message (or its bytes) to `recipients`; refusals are
        reported per recipient."""
        return await self.pool.send(msg, recipients, self.config.from_address)

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        if len(message.text) > self.max_body_length:
            return DeliveryResult(
                DeliveryState.FAILED,
                error_code=ERROR_BODY_TOO_LONG,
                error=f"body has {len(message.text)} characters, at most "
                f"{self.max_body_length} are allowed",
            )
        try:
            msg, message_id = self.wire_message(message)
        except MissingUnsubscribe as exc:
            return DeliveryResult(
                DeliveryState.FAILED, error_code=ERROR_NO_UNSUBSCRIBE, error=str(exc)
            )
        except (ValueError, TypeError) as exc:
            return DeliveryResult(
                DeliveryState.FAILED, error_code=ERROR_BAD_MESSAGE, error=str(exc)
            )
        outcome = await self.send_mime(msg, [message.recipient])
        return outcome.result(provider_id=message_id)

    async def close(self) -> None:
        await self.pool.close()
