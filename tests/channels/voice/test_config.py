"""The voice config: secrets hidden and named by their variables, typos refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from channels.voice.config import SECRET_VARIABLES, VoiceConfig, missing_secrets


def test_defaults_are_off_and_need_nothing() -> None:
    config = VoiceConfig()
    assert (config.twilio.enabled, config.sipgate.enabled, config.pbx.enabled) == (
        False,
        False,
        False,
    )
    assert missing_secrets(config) == []


def test_each_enabled_provider_without_its_secret_names_the_variable() -> None:
    config = VoiceConfig.model_validate(
        {
            "twilio": {"enabled": True},
            "sipgate": {"enabled": True, "auth": "token"},
            "pbx": {"enabled": True},
        }
    )
    assert missing_secrets(config) == [
        "voice.twilio is enabled but CRMHUB_VOICE__TWILIO__AUTH_TOKEN is not set",
        "voice.sipgate (token) is enabled but CRMHUB_VOICE__SIPGATE__TOKEN is not set",
        "voice.pbx is enabled but CRMHUB_VOICE__PBX__TOKEN is not set",
    ]
    basic = VoiceConfig.model_validate({"sipgate": {"enabled": True}})
    assert missing_secrets(basic) == [
        "voice.sipgate (basic) is enabled but CRMHUB_VOICE__SIPGATE__PASSWORD is not set"
    ]


def test_secrets_never_show_in_a_printed_config() -> None:
    config = VoiceConfig.model_validate(
        {"pbx": {"token": "cti-secret"}, "sipgate": {"password": "sg-secret"}}
    )
    assert "cti-secret" not in repr(config) and "sg-secret" not in str(config.model_dump())
    assert config.pbx.token.get_secret_value() == "cti-secret"


def test_every_secret_variable_follows_the_settings_naming() -> None:
    for path, variable in SECRET_VARIABLES.items():
        assert variable == "CRMHUB_VOICE__" + path.upper().replace(".", "__")


@pytest.mark.parametrize(
    "section",
    [
        {"twilio": {"auth_tokn": "x"}},
        {"sipgate": {"auth": "digest"}},
        {"pbx": {"default_region": "de"}},
        {"twilio": {"dial_timeout": 1}},
    ],
)
def test_typos_and_bad_values_are_refused(section: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        VoiceConfig.model_validate(section)
