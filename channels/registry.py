"""Every channel crmhub speaks, declared once: its config, its sender, its webhooks, its words.

The hub builds its senders, mounts its webhooks, reads its config section and
orders its delivery statuses from this table, so a channel is one package
under channels/ plus one entry here (README: "Adding a channel"). Entries are
explicit: a duplicate channel or webhook path fails at import, not at the
first request that happens to reach the wrong one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from channels.base import Channel, Sender, StatusVocabulary, Webhook
from channels.email.config import EmailConfig
from channels.email.config import missing_secrets as email_secrets
from channels.email.senders import MailboxSenders
from channels.email.status import EMAIL_STATUSES
from channels.sms.config import SmsConfig
from channels.sms.config import missing_secrets as sms_secrets
from channels.sms.outbound import TwilioSmsSender
from channels.sms.status import SMS_STATUSES
from channels.sms.webhooks import sms_webhooks
from channels.voice.config import VoiceConfig
from channels.voice.config import missing_secrets as voice_secrets
from channels.voice.webhooks import voice_webhooks


class ChannelConfigs(BaseModel):
    """One config section per channel (`sms:`, `email:` in config.yaml).

    The hub's Settings inherit these fields, so a new channel's section needs
    no edit in hub/config.py and keeps a typed attribute (`settings.sms`).
    """

    sms: SmsConfig = Field(default_factory=SmsConfig)
    email: EmailConfig = Field(default_factory=EmailConfig)
    voice: VoiceConfig = Field(default_factory=VoiceConfig)


@dataclass(frozen=True)
class ChannelEntry:
    channel: Channel
    # The channel's section of the config.
    config: Callable[[ChannelConfigs], Any]
    # A sender when the section configures one, else None; given the send timeout.
    sender: Callable[[Any, float], Sender | None]
    statuses: StatusVocabulary = field(default_factory=StatusVocabulary)
    webhooks: Callable[[Any], Sequence[Webhook]] = lambda config: ()
    # What the section enables but the environment lacks (secrets), one line each.
    missing_secrets: Callable[[Any], list[str]] = lambda config: []
    # The config section's name when it is not the channel's ("voice" for phone calls).
    section: str = ""

    @property
    def section_name(self) -> str:
        return self.section or self.channel.value


def _sms_sender(config: SmsConfig, timeout: float) -> Sender | None:
    if (
        config.enabled
        and config.account_sid
        and (config.from_number or config.messaging_service_sid)
    ):
        return TwilioSmsSender(config, timeout=timeout)
    return None


def _email_sender(config: EmailConfig, timeout: float) -> Sender | None:
    # Each mailbox's SMTP pool has its own timeouts (email.mailboxes[].smtp).
    if any(m.smtp is not None for m in config.mailboxes):
        return MailboxSenders(config.mailboxes)
    return None


CHANNELS: tuple[ChannelEntry, ...] = (
    ChannelEntry(
        Channel.SMS,
        lambda c: c.sms,
        _sms_sender,
        SMS_STATUSES,
        webhooks=sms_webhooks,
        missing_secrets=sms_secrets,
    ),
    ChannelEntry(
        Channel.EMAIL,
        lambda c: c.email,
        _email_sender,
        EMAIL_STATUSES,
        missing_secrets=email_secrets,
    ),
    # Calls are logged on the phone channel; nothing is sent through a Sender.
    ChannelEntry(
        Channel.PHONE,
        lambda c: c.voice,
        lambda config, timeout: None,
        webhooks=voice_webhooks,
        missing_secrets=voice_secrets,
        section="voice",
    ),
)


class RegistryError(ValueError):
    pass


def check(entries: Sequence[ChannelEntry], configs: ChannelConfigs) -> None:
    """A channel named twice, or two webhooks on one path, is a programming error."""
    seen: set[Channel] = set()
    paths: dict[str, Channel] = {}
    for entry in entries:
        if entry.channel in seen:
            raise RegistryError(f"channel {entry.channel.value!r} is registered twice")
        seen.add(entry.channel)
        for hook in entry.webhooks(entry.config(configs)):
            if hook.path in paths:
                raise RegistryError(
                    f"webhook path {hook.path} is registered by {paths[hook.path].value}"
                    f" and {entry.channel.value}"
                )
            paths[hook.path] = entry.channel


check(CHANNELS, ChannelConfigs())
_BY_CHANNEL = {entry.channel: entry for entry in CHANNELS}


def entry_of(channel: Channel | str) -> ChannelEntry:
    return _BY_CHANNEL[Channel(channel)]


def statuses_of(channel: Channel | str) -> StatusVocabulary:
    """The channel's delivery words; a channel without its own has the hub's only."""
    entry = _BY_CHANNEL.get(Channel(channel))
    return entry.statuses if entry is not None else StatusVocabulary()


def senders(configs: ChannelConfigs, timeout: float) -> dict[str, Sender]:
    """The channels this node can send on, by channel name."""
    built = {e.channel.value: e.sender(e.config(configs), timeout) for e in CHANNELS}
    return {name: sender for name, sender in built.items() if sender is not None}


def missing_secrets(configs: ChannelConfigs) -> list[str]:
    """Every secret an enabled channel needs and the environment does not hold."""
    return [line for e in CHANNELS for line in e.missing_secrets(e.config(configs))]


def webhooks(configs: ChannelConfigs) -> list[tuple[Channel, Webhook]]:
    """Every channel's webhooks, built from its config section, in registry order."""
    return [(e.channel, hook) for e in CHANNELS for hook in e.webhooks(e.config(configs))]
