"""Address headers -> Address values: list splitting and sender recovery.

Real-world address headers are often broken: unquoted commas in display
names, group syntax, missing angle brackets, comments instead of names,
addresses with no domain. The splitter here is deliberately more forgiving
than the stdlib's; every repair is reported in ``defects``.
"""

from __future__ import annotations

import email.headerregistry
import email.message
import re
from dataclasses import dataclass

from maildesk.mail import charsets

__all__ = ["NO_SENDER", "Address", "address_fields", "addresses", "canonical", "sender", "split_addr_spec"]


@dataclass(frozen=True)
class Address:
    """A mailbox: decoded display name ("" if none) and address ("" if none)."""

    name: str
    address: str


_ADDRESS_FIELDS = ("from", "sender", "reply-to", "return-path", "to", "cc")


def address_fields(message: email.message.Message, hint: str | None) -> dict[str, str]:
    """Address headers with 8-bit bytes decoded but encoded words kept.

    Repeated To or Cc headers are joined; for the others the first counts.
    """
    fields: dict[str, str] = {}
    for name, value in message.raw_items():
        key = str(name).lower()
        if key in _ADDRESS_FIELDS:
            text = charsets.header_text(value, words=False, hint=hint)[0]
            if key in fields and key in ("to", "cc"):
                fields[key] += ", " + text
            else:
                fields.setdefault(key, text)
    return fields


NO_SENDER = "no sender address could be recovered"


def sender(first: dict[str, str], defects: list[str]) -> Address:
    """The From mailbox, or one recovered from Sender, Reply-To or Return-Path.

    When From names several mailboxes, Sender says which of them sent the
    mail (RFC 5322 §3.6.2); without a Sender the first is taken.
    """
    found = addresses(first.get("from", ""), "From", defects)
    authors = [a for a in found if a.address]
    if len(authors) > 1:
        return _one_author(authors, first, defects)
    if found and found[0].address:
        return found[0]
    name = found[0].name if found else ""
    if "from" not in first:
        defects.append("no From header")
    for header in ("Sender", "Reply-To", "Return-Path"):
        for candidate in addresses(first.get(header.lower(), ""), header, []):
            if candidate.address:
                defects.append(f"From has no address; sender recovered from {header}")
                return Address(name or candidate.name, candidate.address)
    defects.append(NO_SENDER)
    return Address(name, "")


def _one_author(authors: list[Address], first: dict[str, str], defects: list[str]) -> Address:
    agent = next((a for a in addresses(first.get("sender", ""), "Sender", []) if a.address), None)
    if agent is None:
        defects.append(f"From names {len(authors)} addresses and there is no Sender; took the first")
        return authors[0]
    defects.append(f"From names {len(authors)} addresses; took {agent.address!r} from Sender")
    same = [a for a in authors if a.address.casefold() == agent.address.casefold()]
    return same[0] if same else agent


def addresses(value: str, header: str, defects: list[str]) -> list[Address]:
    """The mailboxes in one address header's ``value``; empty items dropped."""
    result = []
    for item in _split_address_list(value):
        address = _one_address(item, header, defects)
        if address.name or address.address:
            result.append(address)
    return result


def _split_address_list(value: str) -> list[str]:
    items: list[str] = []
    buf: list[str] = []
    quoted = escaped = angle = False
    comment = 0
    for ch in value:
        if escaped:
            escaped = False
        elif quoted:
            escaped, quoted = ch == "\\", ch != '"'
        elif comment:
            comment += {"(": 1, ")": -1}.get(ch, 0)
        elif ch == '"':
            quoted = True
        elif ch == "(":
            comment = 1
        elif ch in "<>":
            angle = ch == "<"
        elif ch in ",;" and not angle:
            items.append("".join(buf))
            buf = []
            continue
        elif ch == ":" and not angle and "@" not in buf:
            buf = []  # group display name, e.g. "undisclosed-recipients:"
            continue
        buf.append(ch)
    items.append("".join(buf))
    items = [item.strip() for item in items if item.strip()]
    merged: list[str] = []
    for item in items:
        # "Doe, John <john@x.com>": an unquoted display name with a comma.
        named = "<" in item or _NAME_THEN_ADDRESS.fullmatch(item)
        if merged and named and "@" not in merged[-1] and "<" not in merged[-1]:
            merged[-1] = f"{merged[-1]}, {item}"
        else:
            merged.append(item)
    return merged


def _one_address(item: str, header: str, defects: list[str]) -> Address:
    comments = re.findall(r"\(([^()]*)\)", item)
    if "<" in item:
        name, _, rest = item.partition("<")
        address = rest.split(">", 1)[0]
    else:
        name = comments[0] if comments else ""
        address = re.sub(r"\([^()]*\)", " ", item)
        bare = _NAME_THEN_ADDRESS.fullmatch(address.strip())
        if bare and not bare.group(1).endswith("."):
            name, address = bare.groups()
            defects.append(f"{header}: address without angle brackets after the name {name.strip()!r}")
    name = _unquote(name.strip())
    name, _ = charsets.decode_words(name)
    address = canonical(address)
    if name.casefold() == address.casefold():
        name = ""  # "a@b.example" <a@b.example>: the address again, no name
    elif "@" in name and _BARE_ADDRESS.fullmatch(name.strip("'<> ")) and address:
        defects.append(f"{header}: the name {name!r} is another address than {address!r}, where replies go")
    if address and "@" not in address:
        embedded = re.search(r"[^\s<>\"'(),;:]+@[^\s<>\"'(),;:]+\.[^\s<>\"'(),;:]+", item)
        if embedded:
            address = canonical(embedded.group(0))
            defects.append(f"{header}: address recovered from {item!r}")
        elif re.fullmatch(r"[\w.!#$%&'*+/=?^`{|}~-]+", address):
            defects.append(f"{header}: address {address!r} has no domain")
        else:
            defects.append(f"{header}: unusable address {item!r}")
            address = ""
    return Address(" ".join(name.split()), address)


_BARE_ADDRESS = re.compile(r'[^\s"<>()@,;:]+@[^\s"<>()@,;:]+')
_NAME_THEN_ADDRESS = re.compile(r'(.*\S)\s+([^\s"<>()@,;:]+@[^\s"<>()@,;:]+)')
"""``Test test@example.com``: a display name, then an address without angle brackets."""


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_LOCAL_PART = re.compile(r'(?:"(?:[^"\\]|\\.)*"|[^".@]+)(?:\.(?:"(?:[^"\\]|\\.)*"|[^".@]+))*')
"""Quoted strings and atoms separated by dots (RFC 5322 §3.4.1, with obs-local-part)."""


def canonical(text: str) -> str:
    """An addr-spec as RFC 5322 writes it: no spaces outside quotes, the domain in lower case,
    the local part quoted only when it needs to be (``"john smith"@x``, ``"a@b"@x``).

    A whole address in quotes (``"alice@x.example"``) is unwrapped.
    """
    text = text.strip().removeprefix("mailto:")
    parts = split_addr_spec(text)
    if parts is None:
        address = "".join(text.split()).strip('"').removeprefix("mailto:")
        local, at, domain = address.rpartition("@")
        return f"{local}@{domain.lower()}" if at else address
    local, domain = parts
    try:
        return email.headerregistry.Address(username=local, domain=domain.lower()).addr_spec
    except (ValueError, IndexError):
        return f"{local}@{domain.lower()}"


def split_addr_spec(text: str) -> tuple[str, str] | None:
    """The local part (unquoted) and the domain of an addr-spec whose local part has a quoted
    string; None for any other text, which callers split at its last "@"."""
    if '"' not in text:
        return None
    pieces, position = [], 0
    for match in _QUOTED.finditer(text):
        pieces.append("".join(text[position:match.start()].split()))
        pieces.append(match.group(0))
        position = match.end()
    pieces.append("".join(text[position:].split()))
    compact = "".join(pieces)
    masked = _QUOTED.sub(lambda m: "q" * len(m.group(0)), compact)
    at = masked.rfind("@")
    local, domain = compact[:at], compact[at + 1:]
    if at < 1 or not domain or '"' in domain or not _LOCAL_PART.fullmatch(local):
        return None
    return _QUOTED.sub(lambda m: re.sub(r"\\(.)", r"\1", m.group(1)), local), domain
