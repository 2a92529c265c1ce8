"""Config of the telephony channel (section `voice:` of config.yaml).

Secrets (Twilio's auth token, sipgate's Basic password or URL token, the
PBX token) are never written in the file: each comes from the environment
variable named in `SECRET_VARIABLES`, which pydantic-settings maps onto the
field (`CRMHUB_<SECTION>__<KEY>`, as for the SMS channel). They are
`SecretStr`, so a logged or printed config never shows them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

# Where each secret comes from: (field path, environment variable).
TWILIO_TOKEN_VARIABLE = "CRMHUB_VOICE__TWILIO__AUTH_TOKEN"
SIPGATE_PASSWORD_VARIABLE = "CRMHUB_VOICE__SIPGATE__PASSWORD"
SIPGATE_TOKEN_VARIABLE = "CRMHUB_VOICE__SIPGATE__TOKEN"
PBX_TOKEN_VARIABLE = "CRMHUB_VOICE__PBX__TOKEN"
SECRET_VARIABLES: dict[str, str] = {
    "twilio.auth_token": TWILIO_TOKEN_VARIABLE,
    "sipgate.password": SIPGATE_PASSWORD_VARIABLE,
    "sipgate.token": SIPGATE_TOKEN_VARIABLE,
    "pbx.token": PBX_TOKEN_VARIABLE,
}


class TwilioVoiceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    # Secret: from CRMHUB_VOICE__TWILIO__AUTH_TOKEN only.
    auth_token: SecretStr = SecretStr("")
    # Honour X-Forwarded-Proto / X-Forwarded-Host when computing the signed URL.
    trust_proxy: bool = False
    # Seconds the agents ring before the dial gives up (Twilio allows 5-600).
    dial_timeout: int = Field(20, ge=5, le=600)
    # Caller id shown on agents' phones when dialling a <Number>; empty: the caller's.
    caller_id: str = ""
    # Click-to-dial (POST /api/v1/calls): the account, and our number the customer sees.
    account_sid: str = ""
    from_number: str = ""
    # Where the twilio library sends REST calls; tests point it at a local fake.
    api_base_url: str = "https://api.twilio.com"


class SipgateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    # sipgate.io sends either HTTP Basic credentials (user:password@ in the
    # push URL) or, with "token", a secret path segment of our URL.
    auth: Literal["basic", "token"] = "basic"
    user: str = "sipgate"
    # Secret: from CRMHUB_VOICE__SIPGATE__PASSWORD only.
    password: SecretStr = SecretStr("")
    # Secret: from CRMHUB_VOICE__SIPGATE__TOKEN only.
    token: SecretStr = SecretStr("")


class PbxConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    # Secret: from CRMHUB_VOICE__PBX__TOKEN only; the {token} of /webhooks/cti/{token}.
    token: SecretStr = SecretStr("")
    # Callers rejected as busy on newCall, in any spelling ("+4930…", "030…").
    block_list: list[str] = Field(default_factory=list)
    # The region national numbers (PBX "030…", block list entries) are read in.
    default_region: str = Field("DE", pattern=r"^[A-Z]{2}$")
    # PBX queue name (the webhook's `queue`, any case) -> crmhub team name. A call
    # through a listed queue routes to that team: when the PBX names no agents, its
    # online agents get the pop, and an unknown caller becomes that team's lead.
    queues: dict[str, str] = Field(default_factory=dict)
    # Click-to-dial: the PBX URL crmhub POSTs to, with {extension}, {user} and {number}
    # (E.164, URL-quoted) filled in; empty: no click-to-dial through the PBX.
    dial_url: str = ""


AssignStep = Literal["named", "owner", "round_robin"]


def _default_steps() -> list[AssignStep]:
    return ["named", "owner", "round_robin"]


class VoiceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The public base URL providers call: Twilio signs over it, and the
    # callback URLs we hand out (TwiML statusCallback, sipgate onAnswer) start with it.
    public_url: str = "http://127.0.0.1:8080"
    twilio: TwilioVoiceConfig = Field(default_factory=TwilioVoiceConfig)
    sipgate: SipgateConfig = Field(default_factory=SipgateConfig)
    pbx: PbxConfig = Field(default_factory=PbxConfig)
    # A missed inbound call makes a call-back task due this many minutes later.
    callback_due_minutes: int = Field(60, ge=0, le=10_080)
    # Who places click-to-dial calls: "twilio" or "pbx" (its dial_url).
    click_to_dial: Literal["twilio", "pbx"] = "twilio"
    # Whom a Twilio call rings (routing/assignment.py), first step that finds anyone.
    assignment: list[AssignStep] = Field(default_factory=_default_steps, min_length=1)
    # Round robin skips agents with this many open conversations (0: no maximum).
    max_open_conversations: int = Field(0, ge=0)


def missing_secrets(config: VoiceConfig) -> list[str]:
    """What an enabled provider lacks to verify anything, naming the variable to set."""
    missing = []
    if config.twilio.enabled and not config.twilio.auth_token.get_secret_value():
        missing.append(f"voice.twilio is enabled but {TWILIO_TOKEN_VARIABLE} is not set")
    sipgate = config.sipgate
    if sipgate.enabled and sipgate.auth == "basic" and not sipgate.password.get_secret_value():
        missing.append(
            f"voice.sipgate (basic) is enabled but {SIPGATE_PASSWORD_VARIABLE} is not set"
        )
    if sipgate.enabled and sipgate.auth == "token" and not sipgate.token.get_secret_value():
        missing.append(f"voice.sipgate (token) is enabled but {SIPGATE_TOKEN_VARIABLE} is not set")
    if config.pbx.enabled and not config.pbx.token.get_secret_value():
        missing.append(f"voice.pbx is enabled but {PBX_TOKEN_VARIABLE} is not set")
    return missing
