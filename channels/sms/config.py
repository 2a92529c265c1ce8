"""Config of the SMS channel (section `sms:` of config.yaml).

The auth token is a secret: set it as CRMHUB_SMS__AUTH_TOKEN in the
environment, never in the file.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SmsKeywords(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Whole body, trimmed, case-insensitive. Twilio's defaults plus German.
    opt_out: list[str] = Field(
        default_factory=lambda: [
            "STOP",
            "STOPALL",
            "UNSUBSCRIBE",
            "CANCEL",
            "END",
            "QUIT",
            "REVOKE",
            "OPTOUT",
            "STOPP",
            "ABMELDEN",
        ]
    )
    opt_in: list[str] = Field(default_factory=lambda: ["START", "YES", "UNSTOP"])
    help: list[str] = Field(default_factory=lambda: ["HELP", "INFO"])


class SmsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    account_sid: str = ""
    # Secret: from CRMHUB_SMS__AUTH_TOKEN only.
    auth_token: str = ""
    # Sender: a number (E.164) or a Messaging Service SID (MG...); the service wins.
    from_number: str = ""
    messaging_service_sid: str = ""
    # The public base URL Twilio calls (webhook signatures are computed over it).
    public_url: str = "http://127.0.0.1:8080"
    # Honour X-Forwarded-Proto / X-Forwarded-Host when computing the signed URL.
    trust_proxy: bool = False
    # Twilio's REST API; tests point it at a local fake.
    api_base_url: str = "https://api.twilio.com"
    max_body_chars: int = Field(1600, ge=1, le=1600)
    rate_per_second: float = Field(1.0, gt=0)
    # Twilio requests in flight at once (a campaign's throughput is bounded by the
    # round trip otherwise; rate_per_second still caps the rate).
    max_in_flight: int = Field(4, ge=1, le=100)
    # A reply within this many hours of an SMS we sent joins that message's conversation.
    reply_window_hours: int = Field(72, ge=0)
    keywords: SmsKeywords = Field(default_factory=SmsKeywords)
    help_text: str = (
        "Reply STOP to unsubscribe. Questions? Call us or write to service@example.com."
    )
    opt_out_text: str = (
        "You are unsubscribed and will get no more messages. Reply START to resubscribe."
    )
    opt_in_text: str = "You are subscribed again. Reply STOP to unsubscribe."


def missing_secrets(config: SmsConfig) -> list[str]:
    """What an enabled SMS channel lacks to work, naming the variable to set."""
    if config.enabled and not config.auth_token:
        return ["sms is enabled but its auth token is not set (CRMHUB_SMS__AUTH_TOKEN)"]
    return []
