"""Agents' commands: ``#status solved`` and friends at the top of a reply, in; commands and refusals out.

Pure: no database, no I/O, never raises. ``parse(text)`` takes the new text
of an agent's reply (``quotes.new_text`` has removed the quoted history) and
returns ``Parsed``: the commands in order, the refusals, whether ``#note``
was given, the macros named, and the body left for the customer (or for the
note).

The rules, precisely:

- **Where.** Commands are read at the top of the text: blank lines before
  and between them are skipped, and the first line that is not a command
  ends the block. A command later in the text is ordinary text, except
  ``#macro NAME``, which counts on a line of its own anywhere (it expands at
  that place, with the agent's text around it).
- **What is a command line.** ``#`` directly followed by a word of letters
  (``_`` and ``-`` allowed inside), then the end of the line, blanks, or a
  colon: ``#status solved``, ``#STATUS: Solved``, ``#note``. A line such as
  ``#123 is my order``, ``# heading`` or ``#!`` is not one and ends the
  block. An unknown word (``#stauts solved``) at the top is refused as
  ``unknown command`` and its line is dropped, so a typo never reaches the
  customer.
- **Commands** (one per line; words are case-insensitive):
  ``#status open|pending|solved|closed``, ``#priority low|normal|high|urgent``,
  ``#assign me|none|<agent address or name>``, ``#queue NAME``, ``#tag TAG``,
  ``#untag TAG``, ``#note [text]``, ``#escalate [reason]``, ``#macro NAME``.
  ``#assign`` and ``#queue`` arguments are kept as written (``<>`` around an
  address removed; ``me`` and ``none`` lower-cased): the caller resolves them
  against ``[[agents]]`` and ``[[queues]]`` and refuses what it cannot find.
  A tag is 1-64 letters, digits, ``-``, ``_`` or ``.``, starting with a letter
  or digit; it is kept as written. A macro name is 1-64 letters, digits,
  ``-`` or ``_`` and is lower-cased.
- **Text after ``#note``** on its line becomes the first line of the body.
  ``#escalate``'s text is its reason (``argument``).
- **Only commands.** ``only_commands`` is true when the reply holds commands
  (or refusals) and no body: nothing but blank lines, a ``-- `` signature or
  a mobile-client tail after them. Such a reply changes the ticket and mails
  no customer.
- **Robustness.** CRLF and CR line ends, trailing blanks, a leading
  non-breaking or zero-width space (Outlook, Gmail), and a colon after the
  command word are all tolerated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = [
    "COMMANDS", "Command", "MACRO_LINE", "MACRO_NAME", "PRIORITIES", "Parsed", "Refusal", "STATUSES",
    "clean_line", "parse",
]

STATUSES = ("open", "pending", "solved", "closed")
PRIORITIES = ("low", "normal", "high", "urgent")
COMMANDS = ("status", "priority", "assign", "queue", "tag", "untag", "note", "escalate", "macro")

_INVISIBLE = "\u00a0\u2007\u202f\u200b\u200c\u200d\u2060\ufeff"
_COMMAND_LINE = re.compile(r"#([A-Za-z](?:[A-Za-z_-]*[A-Za-z])?)(?:\s*:\s*|\s+|$)(.*)", re.DOTALL)
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MACRO_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
"""A valid macro name (``#macro NAME``); it is used lower-case."""
MACRO_LINE = re.compile(r"#macro ([a-z0-9][a-z0-9_-]{0,63})")
"""A ``#macro name`` line exactly as ``parse`` leaves it in ``Parsed.body`` (``macros.expand`` reads it)."""
_SIGNATURE = re.compile(r"--\s*")
_MOBILE_TAIL = re.compile(r"(Sent from my|Sent from Mail|Sent from Outlook|Get Outlook for)\b.{0,80}", re.I)
_MAX_LINE = 1000


@dataclass(frozen=True)
class Command:
    name: str
    """One of ``COMMANDS``."""
    argument: str
    """Validated and normalised (``solved``, ``urgent``, ``me``, ``billing``, ``vip``); may be empty."""
    line: str
    """The line as the agent wrote it (cleaned), for the ``command_result`` mail."""


@dataclass(frozen=True)
class Refusal:
    line: str
    """The line as the agent wrote it (cleaned)."""
    reason: str

    def as_dict(self) -> dict[str, str]:
        """An item of the ``command_result`` template's ``refused`` list."""
        return {"command": self.line, "reason": self.reason}


@dataclass(frozen=True)
class Parsed:
    commands: tuple[Command, ...] = ()
    """The top block's commands in the order written (``#note`` included), then one ``macro``
    command per valid ``#macro`` line."""
    refused: tuple[Refusal, ...] = ()
    note: bool = False
    """``#note`` was given: the body is an internal note, never mailed to the customer."""
    body: str = ""
    """The text without command lines; each ``#macro NAME`` stays as the line ``#macro name``
    at its place, for ``macros.expand``."""
    macros: tuple[str, ...] = field(default=())
    """The names of the macros the body names, in order (lower-case, valid names only)."""

    @property
    def has_commands(self) -> bool:
        return bool(self.commands or self.refused)

    @property
    def only_commands(self) -> bool:
        """Commands and nothing for anyone to read: change the ticket, mail no customer."""
        return self.has_commands and not self.body.strip()

    def of(self, name: str) -> list[Command]:
        """The commands called ``name``, in order."""
        return [command for command in self.commands if command.name == name]


def clean_line(line: str) -> str:
    """A line without the blanks and invisible characters mail clients put around it."""
    return line.strip(" \t\f\v" + _INVISIBLE)


def parse(text: str) -> Parsed:
    """The commands at the top of an agent's reply, and what is left of it."""
    if not isinstance(text, str):
        return Parsed()
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    commands: list[Command] = []
    refused: list[Refusal] = []
    note = False
    body: list[str] = []
    index = 0
    while index < len(lines):
        line = clean_line(lines[index])
        if not line:
            index += 1
            continue
        match = _COMMAND_LINE.fullmatch(line) if len(line) <= _MAX_LINE else None
        if match is None:
            break
        word, argument = match.group(1).lower(), " ".join(match.group(2).split())
        index += 1
        if word == "note":
            note = True
            commands.append(Command("note", "", line))
            if argument:
                body.append(argument)
            continue
        if word == "macro":
            body.append(line)
            continue
        outcome = _command(word, argument, line)
        (commands if isinstance(outcome, Command) else refused).append(outcome)
    body += [line.rstrip(" \t" + _INVISIBLE) for line in lines[index:]]
    kept: list[str] = []
    macros: list[str] = []
    for line in _without_signature(body):
        cleaned = clean_line(line)
        match = _COMMAND_LINE.fullmatch(cleaned) if cleaned[:1] == "#" and len(cleaned) <= _MAX_LINE else None
        if match is None or match.group(1).lower() != "macro":
            kept.append(line)
            continue
        name = match.group(2).strip()
        if not name:
            refused.append(Refusal(cleaned, "#macro needs the name of a macro"))
        elif not MACRO_NAME.fullmatch(name):
            refused.append(Refusal(cleaned, f"invalid macro name {name[:80]!r}: up to 64 letters, digits, - and _"))
        else:
            macros.append(name.lower())
            commands.append(Command("macro", name.lower(), cleaned))
            kept.append(f"#macro {name.lower()}")
    return Parsed(tuple(commands), tuple(refused), note, "\n".join(kept).strip("\n"), tuple(macros))


def _command(word: str, argument: str, line: str) -> Command | Refusal:
    if word not in COMMANDS:
        return Refusal(line, f"unknown command #{word}; known are " + ", ".join(f"#{name}" for name in COMMANDS))
    if word in ("status", "priority"):
        allowed = STATUSES if word == "status" else PRIORITIES
        value = argument.lower().rstrip(".!")
        if value in allowed:
            return Command(word, value, line)
        if not argument:
            return Refusal(line, f"#{word} needs a value: one of {', '.join(allowed)}")
        return Refusal(line, f"unknown {word} {argument[:80]!r}; one of {', '.join(allowed)}")
    if word == "assign":
        value = argument.strip("<>").strip()
        if not value:
            return Refusal(line, "#assign needs an agent's address or name, me or none")
        return Command(word, value.lower() if value.lower() in ("me", "none") else value, line)
    if word == "queue":
        if not argument:
            return Refusal(line, "#queue needs the name of a queue")
        return Command(word, argument, line)
    if word in ("tag", "untag"):
        if not argument:
            return Refusal(line, f"#{word} needs a tag")
        if not _TAG.fullmatch(argument):
            return Refusal(line, f"invalid tag {argument[:80]!r}: one tag per line, up to 64 letters, digits, "
                                 "-, _ or .")
        return Command(word, argument, line)
    return Command(word, argument, line)  # escalate: the text is its reason


def _without_signature(lines: list[str]) -> list[str]:
    """The lines before a ``-- `` signature, without a mobile client's tail or trailing blanks."""
    cut = next((i for i, line in enumerate(lines) if _SIGNATURE.fullmatch(clean_line(line))), None)
    if cut is not None:
        lines = lines[:cut]
    while lines and (not clean_line(lines[-1]) or _MOBILE_TAIL.fullmatch(clean_line(lines[-1]))):
        lines = lines[:-1]
    return lines
