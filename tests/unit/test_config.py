"""Config: defaults work with no file; every mistake is named in one line."""

from __future__ import annotations

from pathlib import Path
from typing import get_args, get_origin

import pytest

from maildesk.config import Config, load_config, masked, parse_config
from maildesk.errors import ConfigError


def test_defaults_need_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MAILDESK_CONFIG", raising=False)
    config = load_config()
    assert config.database.url == "sqlite:///var/maildesk.db"
    assert (config.smtp.host, config.smtp.port) == ("127.0.0.1", 2525)
    assert config.default_address.address == "support@localhost"
    assert config.outbound.transport == "file" and str(config.outbound.directory) == "var/outbox"


def test_file_from_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "desk.toml"
    path.write_text('[smtp]\nport = 2626\n')
    monkeypatch.setenv("MAILDESK_CONFIG", str(path))
    assert load_config().smtp.port == 2626


def test_maildesk_toml_in_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MAILDESK_CONFIG", raising=False)
    (tmp_path / "maildesk.toml").write_text('[desk]\ntag_prefix = "ACME"\n')
    assert load_config().desk.tag_prefix == "ACME"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[smtp]\nprot = 25\n', "smtp.prot: unknown key"),
        ('[smpt]\nport = 25\n', "smpt: unknown key"),
        ('[smtp]\nport = "twenty"\n', "smtp.port: Input should be a valid integer"),
        ('[smtp]\nport = 70000\n', "smtp.port: Input should be less than or equal to 65535"),
        ('[[addresses]]\naddress = "not-an-address"\n', "addresses.0.address: 'not-an-address' is not a mail address"),
        ('[smtp]\nprotocol = "pop3"\n', "smtp.protocol: Input should be 'smtp' or 'lmtp'"),
        ("[outbound]\nrobot_pattern = '(bot)\\1@.*'\n",
         "outbound.robot_pattern: not a valid regular expression (RE2 syntax): invalid escape sequence: \\1"),
        ("[outbound]\nrobot_pattern = '(?=bot)\\w+@.*'\n",
         "outbound.robot_pattern: not a valid regular expression (RE2 syntax): invalid perl operator: (?="),
        ('[database\n', "not valid TOML"),
        ('[outbound]\ntransport = "smtp"\npassword = "x"\n', "outbound: password needs username"),
        ('[outbound]\nusername = "u"\npassword = "x"\noauth2_token_command = "t"\n',
         "outbound: give password or oauth2_token_command, not both"),
        ('[outbound]\nhost = "relay.example.com"\nusername = "u"\noauth2_token_command = "t"\n',
         'outbound: oauth2_token_command with tls = "none" would send credentials in clear to relay.example.com'),
    ],
)
def test_a_bad_key_is_named_in_one_line(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert message in text and "\n" not in text
    assert text.startswith(str(path))


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_duplicate_support_address_is_refused() -> None:
    with pytest.raises(ConfigError, match="address listed twice: a@example.com"):
        parse_config({"addresses": [{"address": "a@example.com"}, {"address": "A@example.com"}]})


def test_sub_addresses_match_their_support_address() -> None:
    config = Config.model_validate({"addresses": [{"address": "support@example.com", "queue": "s"}]})
    assert config.address_for("support+ticket-12@example.com") is not None
    assert config.address_for("SUPPORT@example.com") is not None
    assert config.address_for("sales@example.com") is None


def test_masked_hides_secrets() -> None:
    config = parse_config({
        "database": {"url": "postgresql+psycopg://desk:hunter2@db/desk"},
        "outbound": {"transport": "smtp", "username": "desk", "password": "s3cret"},
    })
    shown = masked(config)
    assert "hunter2" not in str(shown) and "s3cret" not in str(shown)
    assert shown["database"]["url"] == "postgresql+psycopg://desk:********@db/desk"


def test_example_config_is_valid_and_documents_every_key() -> None:
    example = Path(__file__).parents[2] / "maildesk.example.toml"
    config = load_config(example)
    text = example.read_text()
    assert "[[rules]]" in text and "rules_file =" in text and len(config.rules) == 3
    for section, model in Config.model_fields.items():
        if section in ("rules", "rules_file"):
            continue
        assert f"[{section}]" in text or f"[[{section}]]" in text, section
        annotation = model.annotation
        # A list section ([[addresses]], [[imap]]) may be empty in the example: use its item type.
        fields = (get_args(annotation)[0] if get_origin(annotation) is list else annotation).model_fields
        for key in fields:
            assert f"{key} =" in text, f"{section}.{key} is not documented in maildesk.example.toml"
