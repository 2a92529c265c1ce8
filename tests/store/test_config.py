"""Config: defaults, the shipped file, unknown keys, environment overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.config import ConfigError, Settings, load_settings

ROOT = Path(__file__).parent.parent.parent


def test_shipped_config_is_valid_and_matches_defaults_where_it_says_so() -> None:
    shipped = load_settings(ROOT / "config.yaml")
    defaults = Settings()
    assert shipped.database.url == "sqlite+aiosqlite:///./crmhub.db" == defaults.database.url
    assert shipped.server == defaults.server
    assert shipped.identity.default_region == "DE"
    assert shipped.teams.by_address == {"sales@example.com": "Sales", "+49 30 5550100": "Sales"}


def test_every_key_is_documented_in_the_shipped_config() -> None:
    text = (ROOT / "config.yaml").read_text()
    for section in Settings.model_fields:
        assert f"\n{section}:" in text, section
        sub = getattr(Settings(), section)
        for key in type(sub).model_fields:
            assert f"  {key}:" in text, f"{section}.{key}"


def test_unknown_key_names_its_path(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("server:\n  hostt: 0.0.0.0\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert str(err.value) == f"{path}: server.hostt: extra inputs are not permitted"


def test_bad_values_and_files_are_one_line_errors(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("server:\n  port: 70000\nidentity:\n  default_region: XX\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert str(err.value) == (
        f"{path}: server.port: input should be less than or equal to 65535; "
        "identity.default_region: value error, unknown region 'XX'"
    )
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="the top level must be a mapping"):
        load_settings(path)
    path.write_text("server: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(path)
    with pytest.raises(ConfigError, match="no such config file"):
        load_settings(tmp_path / "missing.yaml")


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("database:\n  url: sqlite+aiosqlite:///./file.db\nserver:\n  port: 9000\n")
    monkeypatch.setenv("CRMHUB_DATABASE__URL", "postgresql+asyncpg://postgres@127.0.0.1/x")
    monkeypatch.setenv("CRMHUB_SERVER__PORT", "9100")
    settings = load_settings(path)
    assert settings.database.url == "postgresql+asyncpg://postgres@127.0.0.1/x"
    assert settings.server.port == 9100
    monkeypatch.setenv("CRMHUB_SERVER__PORT", "not-a-port")
    with pytest.raises(ConfigError, match=r"server\.port: input should be a valid integer"):
        load_settings(path)


@pytest.mark.parametrize(
    ("email", "error"),
    [
        (
            {"mailboxes": [{"name": "support", "address": "support@example.com"}]},
            "email: value error, reply_token_secret must be set (16+ characters, from "
            "CRMHUB_EMAIL__REPLY_TOKEN_SECRET) when mailboxes are configured",
        ),
        (
            {
                "reply_token_secret": "x" * 16,
                "mailboxes": [
                    {"name": "support", "address": "a@example.com"},
                    {"name": "support", "address": "b@example.com"},
                ],
            },
            "email: value error, mailbox names must be unique (twice: support)",
        ),
        (
            {"reply_token_secret": "x" * 16, "mailboxes": [{"name": "Sup port", "address": "a@x"}]},
            "email.mailboxes.0.name: value error, must be 1-50 lower-case letters, digits, "
            "'-' or '_'",
        ),
        (
            {
                "reply_token_secret": "x" * 16,
                "mailboxes": [
                    {
                        "name": "support",
                        "address": "support@example.com",
                        "imap": {"after_ingest": "move", "move_to": "INBOX"},
                    }
                ],
            },
            "email.mailboxes.0.imap: value error, move_to 'INBOX' is one of the folders read: "
            "moved mail would be read again",
        ),
        (
            {
                "reply_token_secret": "x" * 16,
                "mailboxes": [
                    {
                        "name": "support",
                        "address": "support@example.com",
                        "imap": {"after_ingest": "move", "move_to": "inbox"},
                    }
                ],
            },
            "email.mailboxes.0.imap: value error, move_to 'inbox' is one of the folders read: "
            "moved mail would be read again",
        ),
    ],
)
def test_bad_email_config_names_its_path(tmp_path: Path, email: dict, error: str) -> None:  # type: ignore[type-arg]
    path = tmp_path / "c.yaml"
    path.write_text("")
    with pytest.raises(ConfigError) as err:
        load_settings(path, email=email)
    assert str(err.value) == f"{path}: {error}"
