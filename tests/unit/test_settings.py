"""Everything an admin can change, as one immutable set: a reload that validates
replaces it, one that does not changes nothing, and keys only a restart can
apply keep their running value and are named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from maildesk import settings, templating
from maildesk.errors import ConfigError


def write(path: Path, **sections: dict) -> Path:
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def overrides(tmp_path: Path) -> Path:
    folder = tmp_path / "templates" / "ack"
    folder.mkdir(parents=True)
    (folder / "subject.txt").write_text("Got it: {{ ticket.subject }}\n")
    return tmp_path / "templates"


def test_a_reload_takes_the_new_templates_and_settings(tmp_path: Path, overrides: Path) -> None:
    path = write(tmp_path / "maildesk.toml", outbound={"templates": str(overrides)}, desk={"tag_prefix": "A"})
    running = settings.load(path)
    assert running.templates == {"ack/subject.txt": "Got it: {{ ticket.subject }}\n"}

    (overrides / "ack" / "subject.txt").write_text("Received: {{ ticket.subject }}\n")
    write(path, outbound={"templates": str(overrides)}, desk={"tag_prefix": "B"})
    reloaded = settings.reload(running)

    assert reloaded.needs_restart == []
    assert reloaded.settings.config.desk.tag_prefix == "B"
    assert reloaded.settings.templates == {"ack/subject.txt": "Received: {{ ticket.subject }}\n"}
    assert running.config.desk.tag_prefix == "A"  # the old set is untouched


def test_the_installed_snapshot_is_what_renders(tmp_path: Path, overrides: Path) -> None:
    path = write(tmp_path / "maildesk.toml", outbound={"templates": str(overrides)})
    loaded = settings.load(path)
    loaded.install()
    try:
        (overrides / "ack" / "subject.txt").write_text("Changed on disk: {{ ticket.subject }}\n")
        context = {"ticket": {"subject": "Printer"}}
        subject = templating.renderer(overrides).env.select_template(["custom/ack/subject.txt"]).render(context)
        assert subject.strip() == "Got it: Printer"
    finally:
        templating.install(overrides, None)
    assert templating.renderer(overrides).env.select_template(["custom/ack/subject.txt"]).render(
        {"ticket": {"subject": "Printer"}}).strip() == "Changed on disk: Printer"


def test_a_template_with_a_syntax_error_is_refused_naming_file_and_line(tmp_path: Path, overrides: Path) -> None:
    path = write(tmp_path / "maildesk.toml", outbound={"templates": str(overrides)})
    running = settings.load(path)
    (overrides / "ack" / "body.txt").write_text("Hello\n{% if %}\n")
    with pytest.raises(ConfigError, match=r"outbound.templates: .*ack/body.txt, line 2: "):
        settings.reload(running)


def test_a_bad_config_is_refused_in_one_line(tmp_path: Path) -> None:
    path = write(tmp_path / "maildesk.toml", smtp={"port": 2525})
    running = settings.load(path)
    write(path, smtp={"prot": 2526})
    with pytest.raises(ConfigError) as refused:
        settings.reload(running)
    assert str(refused.value) == f"{path}: smtp.prot: unknown key"


def test_restart_only_keys_keep_their_running_value_and_are_named(tmp_path: Path) -> None:
    path = write(tmp_path / "maildesk.toml", smtp={"port": 2525, "max_recipients": 10},
                 database={"url": "sqlite:///a.db"},
                 outbound={"transport": "smtp", "host": "relay.example", "tls": "starttls",
                           "username": "desk", "password": "s3cret"})
    running = settings.load(path)
    write(path, smtp={"port": 2600, "max_recipients": 20}, database={"url": "sqlite:///b.db"},
          outbound={"transport": "smtp", "host": "relay.example", "tls": "starttls",
                    "username": "desk", "password": "s3cret"})
    reloaded = settings.reload(running)
    config = reloaded.settings.config
    assert reloaded.needs_restart == ["database (... -> ...)", "smtp.port (2525 -> 2600)"]
    assert (config.smtp.port, config.database.url, config.smtp.max_recipients) == (2525, "sqlite:///a.db", 20)
    assert config.outbound.password is not None and config.outbound.password.get_secret_value() == "s3cret"


def test_check_config_checks_the_templates_too(tmp_path: Path, overrides: Path) -> None:
    from click.testing import CliRunner

    from maildesk.cli import main

    path = write(tmp_path / "maildesk.toml", outbound={"templates": str(overrides)})
    assert CliRunner().invoke(main, ["-c", str(path), "check-config"]).exit_code == 0
    (overrides / "ack" / "subject.txt").write_text("{{ ticket.subject }\n")
    result = CliRunner().invoke(main, ["-c", str(path), "check-config"])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"maildesk: outbound.templates: {overrides / 'ack' / 'subject.txt'}, line 1: ")
