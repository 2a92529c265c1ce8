"""Config of the SMTP sender (the future `email.smtp:` section of config.yaml).

The password is a secret: the caller reads it from the environment and
passes it in; it never belongs in the file. Kept next to the sender (not in
hub/config.py) so the sender can be built and tested before the hub wires it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SmtpConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(25, ge=1, le=65535)
    # "ssl": implicit TLS (port 465); "starttls": upgrade after EHLO (587), and
    # refuse to send in clear if the server does not offer it; "none": plain.
    tls: Literal["ssl", "starttls", "none"] = "starttls"
    validate_certs: bool = True
    username: str = ""
    # Secret: set by the caller from the environment, never from config.yaml.
    password: str = ""
    # Persistent connections kept open and reused across sends.
    pool_size: int = Field(4, ge=1, le=100)
    # Seconds for connect and for each SMTP command.
    timeout: float = Field(30.0, gt=0)
    # A connection idle longer than this is checked with NOOP before reuse;
    # servers drop idle clients (Postfix after 300 s) without us noticing.
    noop_after_idle_seconds: float = Field(30.0, ge=0)
    # Header From (unless the message names its sender) and envelope MAIL FROM.
    from_address: str = "crmhub@localhost"
    # Right-hand side of the Message-IDs we generate; our own domain, so replies
    # and bounces quoting it can be recognised as ours.
    domain: str = "localhost"
    # Name sent in EHLO; None lets aiosmtplib use the machine's FQDN.
    local_hostname: str | None = None
    max_body_chars: int = Field(1_000_000, ge=1)
    rate_per_second: float = Field(20.0, gt=0)
