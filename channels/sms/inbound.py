"""Twilio's inbound SMS/MMS webhook form -> `InboundContact`, and the TwiML answer.

The form is the only place Twilio's field names exist; the hub sees a plain
`InboundContact`. Every parameter Twilio sends beyond the ones mapped to
contact fields is kept under `metadata[MetaKey.TWILIO]` (nested, so that a
parameter Twilio adds later can never collide with keys routing writes into
the same metadata, such as "reply" or "keyword").
"""

from __future__ import annotations

import functools
import mimetypes
from collections.abc import Mapping
from datetime import UTC, datetime

from twilio.twiml.messaging_response import MessagingResponse

from channels.base import AttachmentRef, Channel, InboundContact, MetaKey

# Parameters that become contact fields or attachments instead of metadata.
_MAPPED = frozenset({"MessageSid", "SmsSid", "SmsMessageSid", "From", "To", "Body"})
_MEDIA_PREFIXES = ("MediaUrl", "MediaContentType")
# Twilio allows 10 media per MMS; a larger count is a malformed form, not a bigger loop.
MAX_MEDIA = 10


class InvalidSmsForm(ValueError):
    """The form is not a usable Twilio inbound message; the message says why (-> 400)."""


class BodyTooLong(InvalidSmsForm):
    """Body over the configured limit (-> 413, as the issue asks)."""


def _required(form: Mapping[str, str], name: str) -> str:
    value = form.get(name, "").strip()
    if not value:
        raise InvalidSmsForm(f"{name} is missing")
    return value


def _media(form: Mapping[str, str]) -> tuple[AttachmentRef, ...]:
    raw = form.get("NumMedia", "0").strip() or "0"
    # isascii: "²" and "٣" are digits to str.isdigit but not numbers we count on.
    if not (raw.isascii() and raw.isdigit()) or int(raw) > MAX_MEDIA:
        raise InvalidSmsForm(f"NumMedia must be a number from 0 to {MAX_MEDIA}, not {raw!r}")
    refs = []
    for i in range(int(raw)):
        url = form.get(f"MediaUrl{i}", "").strip()
        if not url:
            raise InvalidSmsForm(f"NumMedia is {raw} but MediaUrl{i} is missing")
        content_type = form.get(f"MediaContentType{i}", "").strip() or "application/octet-stream"
        refs.append(AttachmentRef(_filename(url, content_type), content_type, url=url))
    return tuple(refs)


def _filename(url: str, content_type: str) -> str:
    """Twilio names no file; the media SID (last URL segment) plus an extension is stable."""
    name = url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0] or "media"
    ext = mimetypes.guess_extension(content_type.split(";", 1)[0].strip()) or ""
    return name if not ext or name.endswith(ext) else name + ext


def _is_media_param(name: str) -> bool:
    # The startswith with a tuple first: most parameters are not media (this runs
    # for every parameter of every inbound SMS).
    return name.startswith(_MEDIA_PREFIXES) and any(
        name.startswith(p) and name[len(p) :].isdigit() for p in _MEDIA_PREFIXES
    )


def parse_inbound(
    form: Mapping[str, str], *, max_body_chars: int, received_at: datetime | None = None
) -> InboundContact:
    """One inbound message. Twilio sends no timestamp, so `received_at` is the time.

    Raises `InvalidSmsForm` (or `BodyTooLong`) with a message fit for the answer.
    """
    sid = form.get("MessageSid", "").strip() or form.get("SmsSid", "").strip()
    if not sid:
        raise InvalidSmsForm("MessageSid is missing")
    sender = _required(form, "From")
    body = form.get("Body", "")
    if len(body) > max_body_chars:
        raise BodyTooLong(f"Body has {len(body)} characters; at most {max_body_chars} are accepted")
    extra = {k: v for k, v in form.items() if k not in _MAPPED and not _is_media_param(k)}
    return InboundContact(
        channel=Channel.SMS,
        sender=sender,
        recipient=form.get("To", "").strip(),
        text=body,
        provider_id=sid,
        occurred_at=received_at or datetime.now(UTC),
        metadata={MetaKey.TWILIO: extra},
        attachments=_media(form),
    )


@functools.lru_cache(maxsize=256)
def twiml(reply: str | None) -> str:
    """The webhook's answer: one <Message> with the reply, or an empty <Response/>.

    Cached: the answers are a handful of configured texts (mostly none), and
    building the XML was a visible share of a webhook's time.
    """
    response = MessagingResponse()
    if reply:
        response.message(reply)
    return str(response.to_xml(xml_declaration=True))
