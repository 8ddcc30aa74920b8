"""Render the mail maildesk sends from Jinja2 templates.

Every kind of mail (``ack``, ``agent_reply``, ...) is a folder with
``subject.txt``, ``body.txt`` and ``body.html``. The built-in templates live in
``maildesk/templates/LANG/KIND/``; an admin's override directory is searched
first, most specific first::

    OVERRIDES/QUEUE/LANG/KIND/   OVERRIDES/QUEUE/KIND/
    OVERRIDES/LANG/KIND/         OVERRIDES/KIND/
    built-in LANG/KIND/          built-in en/KIND/

``LANG`` falls back from the most specific code to English: ``id-ID``, ``id``,
``en``. Templates run in Jinja2's sandbox (an override cannot reach Python
internals), undefined variables are errors (a typo fails the template test,
not a customer's mail) and only the HTML part is autoescaped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import structlog
from jinja2 import (
    BaseLoader,
    DictLoader,
    FileSystemLoader,
    PrefixLoader,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
)
from jinja2.sandbox import SandboxedEnvironment

log = structlog.get_logger(__name__)

BUILTIN = Path(__file__).parent / "templates"
KINDS = ("ack", "agent_reply", "update", "solved", "notification", "sla_reminder", "sla_breach", "command_result")
PARTS = ("subject.txt", "body.txt", "body.html")
DEFAULT_LANGUAGE = "en"


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def languages(language: str) -> list[str]:
    """The fallback chain of a language code: ``id-ID`` -> ``id-ID``, ``id``, ``en``."""
    parts = language.split("-")
    chain = ["-".join(parts[:n]) for n in range(len(parts), 0, -1)]
    return list(dict.fromkeys([*chain, DEFAULT_LANGUAGE]))


def template_names(overrides: Path | None = None) -> frozenset[str]:
    """Every kind of mail there is a template for: the built-in kinds and, in the override
    directory, any folder of its own with a ``subject.txt`` (an admin's acknowledgement for VIPs)."""
    names = set(KINDS)
    if overrides is not None and overrides.is_dir():
        names.update(path.parent.name for depth in ("*", "*/*", "*/*/*") for path in overrides.glob(f"{depth}/subject.txt"))
    return frozenset(names)


class Renderer:
    """Finds and renders templates; one per override directory (see ``renderer``)."""

    def __init__(self, overrides: Path | None = None, sources: Mapping[str, str] | None = None) -> None:
        """``sources``: the overrides as read by ``read_overrides`` (a snapshot: later edits on
        disk are not seen); without it the directory is read, and re-read when a file changes."""
        self.overrides = overrides
        custom: dict[str, BaseLoader] = {}
        if overrides is not None:
            custom["custom"] = DictLoader(dict(sources)) if sources is not None else FileSystemLoader(str(overrides))
        self.env = SandboxedEnvironment(
            loader=PrefixLoader({"builtin": FileSystemLoader(str(BUILTIN)), **custom}),
            undefined=StrictUndefined,
            autoescape=lambda name: bool(name and name.endswith(".html")),
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            # Built-in templates ship with the package and never change while it runs;
            # an admin's overrides are checked for edits at each use.
            auto_reload=overrides is not None and sources is None,
        )

    def candidates(self, kind: str, part: str, *, queue: str, language: str) -> list[str]:
        """Template names to try, most specific first: ``custom/...`` overrides, then ``builtin/...``."""
        names: list[str] = []
        if self.overrides is not None:
            if queue:
                names += [f"custom/{queue}/{lang}/{kind}/{part}" for lang in languages(language)]
                names.append(f"custom/{queue}/{kind}/{part}")
            names += [f"custom/{lang}/{kind}/{part}" for lang in languages(language)]
            names.append(f"custom/{kind}/{part}")
        names += [f"builtin/{lang}/{kind}/{part}" for lang in languages(language)]
        return list(dict.fromkeys(names))

    def render(self, kind: str, context: dict[str, Any], *, queue: str = "", language: str = "en") -> Rendered:
        """``kind``: a built-in kind, or the name of an override folder of the admin's own."""
        if kind not in KINDS and self.overrides is None:
            raise ValueError(f"unknown kind of mail {kind!r}; one of {', '.join(KINDS)}")
        subject, text, html = (
            self.env.select_template(self.candidates(kind, part, queue=queue, language=language)).render(context)
            for part in PARTS
        )
        return Rendered(subject=" ".join(subject.split()), text=text, html=html)

    def render_or_builtin(self, kind: str, context: dict[str, Any], *, queue: str = "", language: str = "en",
                          builtin: str | None = None) -> Rendered:
        """Like ``render``, but a broken override (syntax error, unknown variable) falls
        back to the built-in template with an error in the log, instead of failing the
        change that sends the mail. ``builtin``: the kind to fall back to when ``kind``
        is an admin's own (default: ``kind``)."""
        try:
            return self.render(kind, context, queue=queue, language=language)
        except TemplateError as exc:
            if self.overrides is None:
                raise
            log.error("template override failed, using the built-in one", kind=kind, queue=queue, error=str(exc))
            return renderer(None).render(builtin or kind, context, queue=queue, language=language)

    def source_of(self, kind: str, part: str, *, queue: str = "", language: str = "en") -> str:
        """Which file would be used (for tests and for an admin wondering why)."""
        template = self.env.select_template(self.candidates(kind, part, queue=queue, language=language))
        return template.filename or template.name or ""


_installed: dict[Path | None, Renderer] = {}


def renderer(overrides: Path | None = None) -> Renderer:
    """The renderer for an override directory: the one ``install``ed for it (the daemon's
    snapshot), else a shared one per directory (Jinja2 caches compiled templates in it)."""
    installed = _installed.get(overrides)
    return installed if installed is not None else _shared(overrides)


@lru_cache(maxsize=8)
def _shared(overrides: Path | None) -> Renderer:
    return Renderer(overrides)


def install(overrides: Path | None, sources: Mapping[str, str] | None) -> None:
    """From now on ``renderer(overrides)`` renders from this snapshot of the overrides
    (``maildesk serve`` installs the set it validated, at start and on reload);
    ``sources`` None goes back to reading the directory."""
    if overrides is None or sources is None:
        _installed.pop(overrides, None)
        return
    _installed[overrides] = Renderer(overrides, sources)


def read_overrides(directory: Path) -> dict[str, str]:
    """Every override template under ``directory``, read now and checked for syntax errors.

    Raises ValueError naming the file and line of the first broken template.
    """
    if not directory.is_dir():
        raise ValueError(f"{directory} is not a directory")
    sources: dict[str, str] = {}
    checker = SandboxedEnvironment(undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    for path in sorted(directory.rglob("*")):
        if path.name not in PARTS or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
            checker.parse(text)
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read {path}: {exc}") from None
        except TemplateSyntaxError as exc:
            raise ValueError(f"{path}, line {exc.lineno}: {exc.message}") from None
        sources[path.relative_to(directory).as_posix()] = text
    return sources


__all__ = ["KINDS", "Rendered", "Renderer", "TemplateNotFound", "install", "languages", "read_overrides",
           "renderer", "template_names"]
