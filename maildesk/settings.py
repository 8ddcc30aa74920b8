"""Everything an admin can change, loaded into one immutable object.

``load()`` reads the config file and every template override and checks
them; ``maildesk serve`` runs on one ``Settings`` and, on SIGHUP, builds a
new one with ``reload()``, which swaps it in only if it validates. A reload
that fails leaves the running set untouched and says why in one line.

Some settings cannot change under a running daemon (the listener's
address, the database, the IMAP mailboxes being polled, ...): a reload
that changes them keeps their running values, applies the rest, and
reports each one as needing a restart, so nothing is half-applied.
(Rules and macros join this object when they exist.)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from maildesk import templating
from maildesk.config import Config, find_config_file, load_config
from maildesk.errors import ConfigError

RESTART_ONLY = (
    "database",
    "smtp.enabled", "smtp.host", "smtp.port", "smtp.protocol", "smtp.tls_cert", "smtp.tls_key",
    "smtp.require_tls", "smtp.auth",
    "processor",
    "imap",
    "http",
    "service.pid_file",
)
"""Config keys (or whole sections) that only a restart applies."""


@dataclass(frozen=True)
class Settings:
    config: Config
    templates: Mapping[str, str] | None = field(default=None, compare=False)
    """The template overrides as read and checked (relative path -> source), or None without overrides."""
    source: Path | None = None

    def install(self) -> None:
        """Make the templates of this set the ones the mail is rendered from."""
        templating.install(self.config.outbound.templates, self.templates)


def load(explicit: str | os.PathLike[str] | None = None, *, config: Config | None = None) -> Settings:
    """Read and check the config (or take ``config``, already read) and the templates; ConfigError if any is bad."""
    source = find_config_file(explicit)
    config = config if config is not None else load_config(source)
    overrides = config.outbound.templates
    try:
        templates = MappingProxyType(templating.read_overrides(overrides)) if overrides is not None else None
    except ValueError as exc:
        raise ConfigError(f"outbound.templates: {exc}") from None
    return Settings(config, templates, source)


@dataclass(frozen=True)
class Reloaded:
    settings: Settings
    needs_restart: list[str]
    """Each changed key that keeps its running value until a restart, as ``key (old -> new)``."""


def reload(running: Settings) -> Reloaded:
    """The set to run on after a SIGHUP; ConfigError (and nothing changed) if the new one is bad."""
    fresh = load(running.source)
    config, changed = fresh.config, []
    for key in RESTART_ONLY:
        before, after = _get(running.config, key), _get(config, key)
        if before != after:
            changed.append(f"{key} ({_short(before)} -> {_short(after)})")
            config = _with(config, key, before)
    return Reloaded(Settings(config, fresh.templates, running.source), changed)


def _get(config: Config, key: str) -> Any:
    value: Any = config
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _with(config: Config, key: str, value: Any) -> Config:
    """``config`` with ``key`` set to ``value`` (a value taken from a validated config)."""
    section, _, name = key.partition(".")
    if name:
        value = getattr(config, section).model_copy(update={name: value})
    return config.model_copy(update={section: value})


def _short(value: Any) -> str:
    """A changed value as the log shows it: scalars as they are, sections (which may hold secrets) not."""
    if isinstance(value, str | int | float | bool | Path) or value is None:
        return str(value)
    return "..."
