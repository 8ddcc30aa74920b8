"""Canned answers: ``#macro NAME`` in an agent's reply expands into a template at that place.

Pure: reads template files, no database, no network.

A macro is a file ``macros/NAME.txt``: first in the admin's templates
directory (``outbound.templates``, the override directory), then among the
built-in ones (``maildesk/templates/macros/``: ``thanks`` and
``need_more_info``). An admin's macro of the same name wins. Names are 1-64
letters, digits, ``-`` and ``_``; ``#macro Thanks`` looks up ``thanks.txt``,
so file names must be lower-case.

Macros are plain text rendered in Jinja2's sandbox with undefined variables
as errors. They see these variables (``macro_variables`` builds them):

- ``requester_name``: the customer's name (may be empty; ``{{ requester_name or "there" }}``)
- ``ticket_id``: the ticket number
- ``subject``: the ticket's subject
- ``queue``: the ticket's queue
- ``agent_name``: the name of the agent who wrote the reply (may be empty)

How the caller uses it, with ``commands.parse``'s result::

    rendered, refused = {}, []
    for name in parsed.macros:
        try:
            rendered[name] = render_macro(name, variables, templates_dir)
        except MacroError as error:
            refused.append((f"#macro {name}", str(error)))
    if not refused:
        text = expand(parsed.body, rendered.__getitem__)

An unknown or broken macro raises ``MacroError`` with one line saying why;
the reply should then not go out, and the agent is told (``command_result``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, TemplateNotFound, TemplateSyntaxError
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

from maildesk.desk.commands import MACRO_LINE, MACRO_NAME, clean_line

__all__ = ["BUILTIN_MACROS", "MacroError", "VARIABLES", "expand", "list_macros", "macro_variables", "render_macro"]

BUILTIN_MACROS = Path(__file__).resolve().parent.parent / "templates" / "macros"
VARIABLES = ("requester_name", "ticket_id", "subject", "queue", "agent_name")


class MacroError(ValueError):
    """A macro that cannot be used: unknown, invalid name, broken template. One line."""


def _directories(templates_dir: Path | None) -> list[Path]:
    return [*([Path(templates_dir) / "macros"] if templates_dir is not None else []), BUILTIN_MACROS]


def list_macros(templates_dir: Path | None = None) -> list[str]:
    """The names of the macros there are, the admin's and the built-in ones, sorted."""
    names = {
        path.stem.lower()
        for directory in _directories(templates_dir) if directory.is_dir()
        for path in directory.glob("*.txt")
        if path.is_file() and MACRO_NAME.fullmatch(path.stem) and path.stem == path.stem.lower()
    }
    return sorted(names)


@lru_cache(maxsize=8)
def _environment(templates_dir: Path | None) -> SandboxedEnvironment:
    return SandboxedEnvironment(
        loader=FileSystemLoader([str(directory) for directory in _directories(templates_dir)]),
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=templates_dir is not None,
    )


def macro_variables(
    *, requester_name: str, ticket_id: int, subject: str, queue: str, agent_name: str
) -> dict[str, Any]:
    """The variables a macro sees (see the module's docstring)."""
    return {"requester_name": requester_name, "ticket_id": ticket_id, "subject": subject, "queue": queue,
            "agent_name": agent_name}


def render_macro(name: str, variables: dict[str, Any], templates_dir: Path | None = None) -> str:
    """The text of macro ``name``, without trailing blank lines; ``MacroError`` when it cannot be had."""
    if not isinstance(name, str) or not MACRO_NAME.fullmatch(name):
        raise MacroError(f"invalid macro name {str(name)[:80]!r}")
    name = name.lower()
    try:
        template = _environment(templates_dir).get_template(f"{name}.txt")
        text = template.render(variables)
    except TemplateNotFound:
        there_are = ", ".join(list_macros(templates_dir)) or "none"
        raise MacroError(f"unknown macro {name!r}; there are: {there_are}") from None
    except TemplateSyntaxError as error:
        raise MacroError(f"macro {name!r} is broken: line {error.lineno}: {_one_line(error.message)}") from None
    except UndefinedError as error:
        raise MacroError(f"macro {name!r} is broken: {_one_line(error.message)}; "
                         f"macros know {', '.join(VARIABLES)}") from None
    except SecurityError as error:
        raise MacroError(f"macro {name!r} is refused by the sandbox: {_one_line(str(error))}") from None
    except Exception as error:  # a template can raise anything (1/0, a huge range): the macro is broken
        raise MacroError(f"macro {name!r} is broken: {type(error).__name__}: {_one_line(str(error))}") from None
    return text.rstrip()


def expand(body: str, render: Callable[[str], str]) -> str:
    """``body`` with each ``#macro name`` line (as ``commands.parse`` leaves it) replaced by
    ``render(name)``. What ``render`` raises goes to the caller; its output is not scanned again."""
    lines: list[str] = []
    for line in body.split("\n"):
        match = MACRO_LINE.fullmatch(clean_line(line))
        lines.append(render(match.group(1)) if match else line)
    return "\n".join(lines)


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())[:300]
