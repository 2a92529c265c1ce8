"""Config of the email channel: the `email:` section of config.yaml.

Secrets (IMAP and SMTP passwords, the reply-token key) never live in the
file: each password names the environment variable that holds it
(`password_env`), and the token key comes from
CRMHUB_EMAIL__REPLY_TOKEN_SECRET. Kept in the channel (like SmsConfig) so
the adapter can be built and tested without the hub.
"""

from __future__ import annotations

import os
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from channels.email.limits import MailLimits
from channels.email.smtp_config import SmtpConfig

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,49}$")


class ImapConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(993, ge=1, le=65535)
    # "ssl": implicit TLS (993); "starttls": upgrade after connect (143), and
    # refuse to log in in clear if the server does not offer it; "none": plain.
    tls: Literal["ssl", "starttls", "none"] = "ssl"
    validate_certs: bool = True
    user: str = ""
    # Name of the environment variable holding the password (never the password).
    password_env: str = ""
    folders: list[str] = Field(default_factory=lambda: ["INBOX"], min_length=1)
    # "idle": wait for the server to push new mail (IMAP IDLE), falling back to
    # polling when the server lacks IDLE; "poll": look every poll_seconds.
    mode: Literal["idle", "poll"] = "idle"
    poll_seconds: float = Field(60.0, gt=0)
    # RFC 2177: servers may drop an IDLE after 30 minutes, so it is renewed
    # before 29 minutes: strictly less than 29 * 60 s (default 25 minutes).
    # A dead connection is noticed sooner, by TCP keepalive (imap.py).
    idle_renew_seconds: float = Field(25 * 60, gt=0, lt=29 * 60)
    # Seconds for connect and for every single IMAP command.
    timeout: float = Field(60.0, gt=0)
    # After a message is committed: flag it \Seen, or move it to `move_to`.
    after_ingest: Literal["seen", "move"] = "seen"
    move_to: str = "Processed"
    # Messages fetched and committed together (one transaction with the checkpoint).
    batch_size: int = Field(200, ge=1, le=5000)
    # Reconnect after a lost connection: backoff doubles from min to max seconds.
    reconnect_min_seconds: float = Field(1.0, gt=0)
    reconnect_max_seconds: float = Field(300.0, gt=0)

    @model_validator(mode="after")
    def _move_elsewhere(self) -> ImapConfig:
        # INBOX is case-insensitive (RFC 3501); other names are the server's own.
        def same(name: str) -> str:
            return "INBOX" if name.upper() == "INBOX" else name

        if self.after_ingest == "move" and same(self.move_to) in {same(f) for f in self.folders}:
            raise ValueError(
                f"move_to {self.move_to!r} is one of the folders read: "
                "moved mail would be read again"
            )
        return self

    def password(self) -> str:
        return os.environ.get(self.password_env, "") if self.password_env else ""


class MailboxConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Short name used in logs, checkpoints, the quarantine and outbox rows.
    name: str
    # The address customers write to; From of replies sent through this mailbox.
    address: str
    # Replies carry Reply-To: <local>+<token>@<domain> of this address
    # (sub-addressing, so they land in the same mailbox). Empty: `address`.
    reply_address: str = ""
    imap: ImapConfig | None = None
    smtp: SmtpConfig | None = None
    # Name of the environment variable holding the SMTP password.
    smtp_password_env: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must be 1-50 lower-case letters, digits, '-' or '_'")
        return value

    @field_validator("address", "reply_address")
    @classmethod
    def _address(cls, value: str) -> str:
        if value and value.count("@") != 1:
            raise ValueError(f"{value!r} is not an email address")
        return value.strip().lower()

    def smtp_config(self) -> SmtpConfig | None:
        """The SMTP config with the password read from the environment."""
        if self.smtp is None:
            return None
        password = os.environ.get(self.smtp_password_env, "") if self.smtp_password_env else ""
        from_address = self.smtp.from_address
        if not from_address or from_address == SmtpConfig.model_fields["from_address"].default:
            from_address = self.address
        return self.smtp.model_copy(update={"password": password, "from_address": from_address})


class LoopGuardConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # More than max_messages from one sender within `minutes` is a mail loop:
    # the rest is recorded only (no conversation, nothing triggered) and reported.
    max_messages: int = Field(20, ge=1)
    minutes: int = Field(10, ge=1)


class EmailConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mailboxes: list[MailboxConfig] = Field(default_factory=list)
    # Where attachments are stored, content-addressed (sha256 path).
    attachments_dir: str = "./attachments"
    # Attachments larger than this are listed in the history but not stored.
    max_attachment_bytes: int = Field(10_000_000, ge=0)
    # Secret key signing reply-token addresses; set CRMHUB_EMAIL__REPLY_TOKEN_SECRET.
    reply_token_secret: str = ""
    loop_guard: LoopGuardConfig = Field(default_factory=LoopGuardConfig)
    # What one inbound message may cost (size, headers, MIME, text, attachments,
    # parser time and memory); over a limit it is quarantined with the reason.
    limits: MailLimits = Field(default_factory=MailLimits)

    @model_validator(mode="after")
    def _check(self) -> EmailConfig:
        names = [m.name for m in self.mailboxes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"mailbox names must be unique (twice: {', '.join(dupes)})")
        if self.mailboxes and len(self.reply_token_secret) < 16:
            raise ValueError(
                "reply_token_secret must be set (16+ characters, from "
                "CRMHUB_EMAIL__REPLY_TOKEN_SECRET) when mailboxes are configured"
            )
        return self

    def mailbox(self, name: str) -> MailboxConfig | None:
        return next((m for m in self.mailboxes if m.name == name), None)


def missing_secrets(config: EmailConfig) -> list[str]:
    """Password variables that mailboxes name but the environment does not hold."""
    missing = []
    for box in config.mailboxes:
        named = [("imap.password_env", box.imap.password_env if box.imap else "")]
        named.append(("smtp_password_env", box.smtp_password_env if box.smtp else ""))
        for key, variable in named:
            if variable and variable not in os.environ:
                missing.append(f"mailbox {box.name}: {key} names {variable}, which is not set")
    return missing
