"""Typed configuration: `config.yaml`, then `CRMHUB_*` environment variables on top.

Every key has a default here, so an empty file is a valid config. Unknown keys
are errors that name their path: a typo must not silently fall back to a default.
Secrets never live in the file; they come from the environment
(`CRMHUB_<SECTION>__<KEY>`), which overrides any key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from channels.base import Channel
from channels.registry import ChannelConfigs
from routing.registry import PipelineError, check_pipeline

DEFAULT_CONFIG_PATH = Path("config.yaml")
ROLES = ("admin", "supervisor", "agent", "marketing")


class ConfigError(Exception):
    """A config problem, phrased for a one-line CLI message."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    # The largest request body accepted by any endpoint; larger ones get 413.
    max_body_bytes: int = Field(1_048_576, ge=1024)
    # One log line per request; off where a proxy in front logs them already.
    access_log: bool = True
    # Query strings carry phone numbers, emails and search terms: personal data
    # stays out of the access log unless this is true.
    access_log_query: bool = False
    # The https URL customers reach this hub at (unsubscribe and sign-up links
    # in mail); empty: http://host:port, which only suits a local test.
    public_url: str = ""


class AuthConfig(_Section):
    # scrypt's N = 2^password_cost (r = 8, p = 1): 17 costs ~0.3 s and 128 MB a
    # hash. Lower only for tests; older, cheaper hashes are redone at login.
    password_cost: int = Field(17, ge=10, le=20)
    # A token unused for this long stops working (last use is kept per token).
    token_idle_days: float = Field(30.0, gt=0)
    # Failed logins allowed before delays start, per username and per client
    # address; each further failure doubles the wait, up to max_delay_seconds.
    login_free_failures: int = Field(5, ge=1)
    login_free_failures_per_address: int = Field(20, ge=1)
    login_max_delay_seconds: float = Field(900.0, gt=0)
    # `crmhub serve` refuses a non-loopback address while a user still has the
    # demo password, unless this is true (or --allow-demo-passwords is given).
    allow_demo_passwords_on_network: bool = False


class RetentionRule(_Section):
    # History of this channel ("email", "sms", "phone", "note"; "*" for all) and
    # direction ("in", "out", "*") older than `days` is deleted, or anonymised
    # (text, subject, addresses and metadata blanked; the entry stays as a count).
    channel: str = "*"
    direction: Literal["in", "out", "*"] = "*"
    days: int = Field(ge=1)
    action: Literal["delete", "anonymise"] = "anonymise"


class PrivacyConfig(_Section):
    # Key of the suppression list's hashes (HMAC-SHA256); set
    # CRMHUB_PRIVACY__SUPPRESSION_KEY (16+ characters). Erasure refuses without it.
    suppression_key: str = ""
    # Retention: off while empty. The hub applies the rules every
    # retention_interval_hours; `crmhub retention run --dry-run` counts first.
    retention: list[RetentionRule] = Field(default_factory=list)
    retention_interval_hours: float = Field(24.0, gt=0)


class DatabaseConfig(_Section):
    url: str = "sqlite+aiosqlite:///./crmhub.db"
    echo: bool = False
    # Connections per node; PostgreSQL only (SQLite uses one writer anyway).
    pool_size: int = Field(10, ge=1, le=200)


class IdentityConfig(_Section):
    # Region used to read national phone numbers such as "030 1234567".
    default_region: str = "DE"

    @field_validator("default_region")
    @classmethod
    def _upper(cls, value: str) -> str:
        import phonenumbers

        region = value.upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown region {value!r}")
        return region


class IngestConfig(_Section):
    # Group commit: the writer takes up to `batch_max` waiting contacts into one
    # transaction. It never waits for a batch to fill; whatever queued while the
    # previous commit ran goes into the next one.
    batch_max: int = Field(512, ge=1, le=10_000)
    # Contacts waiting for the writer, at most: past it a webhook is answered
    # 503 + Retry-After (the provider retries) instead of memory growing
    # through a burst or a slow database.
    max_queue: int = Field(20_000, ge=1)


class TeamsConfig(_Section):
    # Team for leads created by an inbound contact whose recipient address is
    # not listed in `by_address`.
    default: str = "Support"
    # Recipient address (mailbox or phone number, any format) -> team name.
    by_address: dict[str, str] = Field(default_factory=dict)


class PipelinesConfig(_Section):
    """The ordered routing steps of each channel (routing/registry.py lists them).

    A channel left out keeps its default. A step under a channel it does not
    apply to (sms_keywords under email) is an error naming the path, like an
    unknown step name.
    """

    # Bounces first (they look like auto-replies too), then auto-replies,
    # then the loop guard; machine mail stops there and threads nowhere.
    email: list[str] = Field(
        default_factory=lambda: [
            "email_bounce",
            "email_autoreply",
            "email_loop_guard",
            "email_unsubscribe",
            "thread_conversation",
        ]
    )
    sms: list[str] = Field(default_factory=lambda: ["sms_keywords", "thread_conversation"])
    phone: list[str] = Field(default_factory=lambda: ["thread_conversation"])

    @field_validator("email", "sms", "phone")
    @classmethod
    def _steps_apply(cls, names: list[str], info: ValidationInfo) -> list[str]:
        assert info.field_name is not None
        try:
            where = f"routing.pipelines.{info.field_name}"
            check_pipeline(where, Channel(info.field_name), names, ())
        except PipelineError as exc:
            # pydantic names the path (routing.pipelines.<channel>); a custom
            # error keeps its "Value error, " prefix out of the CLI's one line.
            raise PydanticCustomError("routing_pipeline", exc.reason) from exc
        return names

    def by_channel(self) -> dict[Channel, list[str]]:
        return {Channel(name): steps for name, steps in self.model_dump().items()}


ConversationStep = Literal["owner", "round_robin"]


def _conversation_steps() -> list[ConversationStep]:
    return ["owner", "round_robin"]


class AssignmentConfig(_Section):
    """Who gets a new email or SMS conversation (hub/calls/assign.py)."""

    # Off: the customer's owner, online or not (as before assignment existed).
    enabled: bool = True
    # In this order, the first that finds someone: the owner if online and not at
    # the maximum; the next online agent of the customer's team (round robin).
    steps: list[ConversationStep] = Field(default_factory=_conversation_steps, min_length=1)
    # Agents with this many open conversations get no new one (0: no maximum).
    max_open_conversations: int = Field(0, ge=0)


class RoutingConfig(_Section):
    pipelines: PipelinesConfig = Field(default_factory=PipelinesConfig)
    assignment: AssignmentConfig = Field(default_factory=AssignmentConfig)

    @model_validator(mode="before")
    @classmethod
    def _no_single_list(cls, data: Any) -> Any:
        if isinstance(data, dict) and "steps" in data:
            raise PydanticCustomError(
                "routing_steps_replaced",
                "the single list `steps` was replaced by `pipelines` (one step list "
                "per channel: email, sms, phone); move each step under the channels "
                "it applies to (see config.yaml)",
            )
        return data


class OutboxConfig(_Section):
    # The dispatcher looks for due rows this often when idle; a message queued
    # on this node wakes it at once.
    poll_seconds: float = Field(1.0, gt=0)
    # Rows claimed per round.
    batch_size: int = Field(20, ge=1, le=1000)
    # Sends of one message, counting the first; then it is failed.
    max_attempts: int = Field(5, ge=1, le=100)
    # Wait before retry n: retry_base_seconds * 2^(n-1), at most retry_max_seconds.
    retry_base_seconds: float = Field(30.0, gt=0)
    retry_max_seconds: float = Field(3600.0, gt=0)
    # A claim older than this belongs to a node that died; another node takes it.
    lease_seconds: float = Field(300.0, gt=0)
    # One provider call may take this long; must stay below lease_seconds so a
    # live node's claim never expires while it waits.
    send_timeout_seconds: float = Field(30.0, gt=0)
    # A campaign message found "sending" after a crash may have gone out already
    # (SMTP and Twilio cannot be asked): send it again under the same Message-ID
    # ("resend": nobody misses it, a few may get it twice) or give it up ("skip").
    # Either way it is counted as uncertain in the campaign's statistics.
    in_flight_after_crash: Literal["resend", "skip"] = "resend"
    # Sliding window per channel ("email", "sms") or email sender ("email:<mailbox
    # name>"): at most this many rows claimed in any hour, counted from the database
    # so it holds across nodes and restarts; the rest wait queued. Absent: no limit.
    max_per_hour: dict[str, int] = Field(default_factory=dict)

    @field_validator("max_per_hour")
    @classmethod
    def _window_keys(cls, value: dict[str, int]) -> dict[str, int]:
        for key, n in value.items():
            if key not in ("email", "sms") and not re.fullmatch(r"email:.+", key):
                raise ValueError(f"{key!r}: a key is 'email', 'sms' or 'email:<mailbox name>'")
            if n < 1:
                raise ValueError(f"{key!r}: at least 1 per hour")
        return value

    @model_validator(mode="after")
    def _timeout_below_lease(self) -> OutboxConfig:
        if self.send_timeout_seconds >= self.lease_seconds:
            raise ValueError("send_timeout_seconds must be less than lease_seconds")
        return self


class EventsConfig(_Section):
    # Events kept for reconnecting clients (GET /api/v1/events?last_event_id=):
    # the newest keep_events, none older than keep_hours.
    keep_events: int = Field(10_000, ge=100)
    keep_hours: float = Field(24.0, gt=0)
    # Frames waiting for one slow client; past it the client gets bus.overflow.
    client_queue: int = Field(1000, ge=10)


class ApiConfig(_Section):
    page_size: int = Field(50, ge=1, le=1000)
    max_page_size: int = Field(500, ge=1, le=10_000)


class SubscriptionsConfig(_Section):
    # Key of the signed unsubscribe and sign-up links (HMAC-SHA256); set
    # CRMHUB_SUBSCRIPTIONS__TOKEN_KEY (16+ characters). Links are refused without it.
    token_key: str = ""
    # The address in List-Unsubscribe's mailto: (mail to it is read by a mailbox
    # of email.mailboxes); empty: no mailto, the https link only.
    unsubscribe_address: str = ""
    # The mailbox (email.mailboxes name) that sends sign-up confirmations;
    # empty: the first mailbox that can send.
    signup_mailbox: str = ""
    # Sign-up requests per client address per hour (each sends a mail).
    signup_per_hour: int = Field(10, ge=1)
    # A confirmation link works this long.
    confirm_days: float = Field(7.0, gt=0)


class QuietHours(_Section):
    # Local time of the recipient (from the phone number's region, else the
    # customer's country, else campaigns.default_timezone): sends wait outside it.
    start: str = Field("08:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
    end: str = Field("20:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


def _sms_quiet_hours() -> dict[Literal["sms", "email"], QuietHours]:
    return {"sms": QuietHours()}


class CampaignsConfig(_Section):
    # Run the scheduler (campaign runs, follow-ups, task reminders) in `serve`.
    # With PostgreSQL only the node holding the advisory lock runs it.
    scheduler: bool = True
    # How often the leader looks at running campaigns (follow-ups, done, failure pause).
    tick_seconds: float = Field(10.0, gt=0)
    default_timezone: str = "Europe/Berlin"
    # Quiet hours per channel for marketing messages; absent channel: none.
    quiet_hours: dict[Literal["sms", "email"], QuietHours] = Field(default_factory=_sms_quiet_hours)
    # No customer gets more than this many marketing messages per channel in 7 days.
    max_per_week: int = Field(3, ge=1)
    # What a frequency-capped message does: wait until the cap allows it, or be skipped.
    over_cap: Literal["defer", "skip"] = "skip"
    # Customers read, rendered and queued per transaction during expansion.
    chunk: int = Field(1000, ge=10, le=20000)


class DemoConfig(_Section):
    customers: int = Field(1000, ge=0, le=1_000_000)
    # Password of the demo users (admin, supervisor, agent1, agent2, marketing);
    # demo only, never use it for real users.
    password: str = "demo"


class Settings(BaseSettings, ChannelConfigs):
    """The whole config. The channel sections (`sms`, `email`, …) come from
    channels/registry.py, so adding a channel does not edit this file."""

    model_config = SettingsConfigDict(
        env_prefix="CRMHUB_", env_nested_delimiter="__", extra="forbid"
    )

    server: ServerConfig = Field(default_factory=ServerConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    teams: TeamsConfig = Field(default_factory=TeamsConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    demo: DemoConfig = Field(default_factory=DemoConfig)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    subscriptions: SubscriptionsConfig = Field(default_factory=SubscriptionsConfig)
    campaigns: CampaignsConfig = Field(default_factory=CampaignsConfig)

    @model_validator(mode="after")
    def _windows_name_mailboxes(self) -> Settings:
        names = {m.name for m in getattr(getattr(self, "email", None), "mailboxes", [])}
        for key in self.outbox.max_per_hour:
            if key.startswith("email:") and key[len("email:") :] not in names:
                raise ValueError(
                    f"outbox.max_per_hour: {key!r} names no mailbox of email.mailboxes"
                )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init = the YAML file's content (see load_settings); env wins over it.
        return (env_settings, init_settings)


def _env_source(loc: tuple[int | str, ...], environ: Mapping[str, str]) -> str | None:
    """The CRMHUB_ variable that set the value at `loc`, if one did (it wins over the file)."""
    keys = [str(part).lower() for part in loc]
    for name in environ:
        if name.startswith("CRMHUB_"):
            key = name[len("CRMHUB_") :].lower().split("__")
            if key == keys[: len(key)]:
                return name
    return None


def _config_error(exc: ValidationError, path: Path, environ: Mapping[str, str]) -> ConfigError:
    """One line; a problem a variable caused names the variable, not the file."""
    by_source: dict[str, list[str]] = {}
    for err in exc.errors():
        variable = _env_source(err["loc"], environ)
        source = f"environment variable {variable}" if variable else str(path)
        where = ".".join(str(p) for p in err["loc"]) or "<root>"
        by_source.setdefault(source, []).append(
            f"{where}: {err['msg'][:1].lower()}{err['msg'][1:]}"
        )
    return ConfigError("; ".join(f"{src}: {'; '.join(msgs)}" for src, msgs in by_source.items()))


# CRMHUB_ variables that are not settings: the config path and the tools' own.
TOOL_VARIABLES = frozenset({"CONFIG", "NEW_USER_PASSWORD", "REQUIRE_SERVICES", "FUZZ_EXAMPLES"})
TOOL_PREFIXES = ("TEST_", "BENCH_")


def check_environment(environ: Mapping[str, str]) -> None:
    """An unknown section in a CRMHUB_ variable is an error, like an unknown key in
    the file: pydantic would ignore it, and a typo in a secret's name would
    leave the secret unset without a word."""
    sections = sorted(Settings.model_fields)
    for name in sorted(environ):
        if not name.startswith("CRMHUB_"):
            continue
        rest = name[len("CRMHUB_") :]
        if rest in TOOL_VARIABLES or rest.startswith(TOOL_PREFIXES):
            continue
        section, nested, _key = rest.partition("__")
        if nested and section.lower() in sections:
            continue
        near = next((s for s in sections if rest.lower().startswith(s + "_")), None)
        if not nested and near is not None:
            hint = f"; did you mean CRMHUB_{near.upper()}__{rest[len(near) + 1 :]}?"
            raise ConfigError(
                f"environment variable {name}: sections and keys are joined by '__'{hint}"
            )
        raise ConfigError(
            f"environment variable {name}: unknown section {section.lower()!r} "
            f"(sections: {', '.join(sections)})"
        )


def load_settings(path: Path | str | None = None, **overrides: Any) -> Settings:
    """Read config from `path` (or $CRMHUB_CONFIG, or ./config.yaml when present)."""
    check_environment(os.environ)
    if path is None:
        env_path = os.environ.get("CRMHUB_CONFIG")
        path = Path(env_path) if env_path else DEFAULT_CONFIG_PATH
        required = bool(env_path)
    else:
        path = Path(path)
        required = True
    data: dict[str, Any] = {}
    if path.exists():
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        data = loaded or {}
    elif required:
        raise ConfigError(f"{path}: no such config file")
    for key, value in overrides.items():
        data[key] = value
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise _config_error(exc, path, os.environ) from exc
