"""Cap how deep MIME entities nest before the stdlib parser sees them.

The email package builds nested multiparts and message/rfc822 parts by
recursion, so a mail nested a thousand levels deep ends in a RecursionError
(and takes a second of boundary matching before that). ``cap_depth()``
follows the nesting in the raw bytes, as the parser will, and turns the
first entity that would nest deeper than the limit into an opaque
``application/octet-stream`` leaf: everything below it is kept as the bytes
of one attachment, and everything above it parses as usual.

Each level needs a Content-Type header (but for a multipart/digest's
parts, which default to message/rfc822, so every other level); a mail with
fewer of them is left alone after counting them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["cap_depth"]

_CONTENT_TYPE = re.compile(rb"^content-type[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)", re.IGNORECASE | re.MULTILINE)
_BOUNDARY = re.compile(rb"""boundary[ \t]*=[ \t]*(?:"([^"]*)"|([^;\s]+))""", re.IGNORECASE)
_OPAQUE = b"Content-Type: application/octet-stream\n"


@dataclass(frozen=True)
class _Multipart:
    boundary: bytes
    depth: int
    digest: bool


def cap_depth(data: bytes, limit: int) -> tuple[bytes, bool]:
    """``data`` (LF line endings) with nesting deeper than ``limit`` made one leaf; whether it was."""
    if data.lower().count(b"content-") < limit // 2:
        return data, False
    position = _too_deep(data, limit)
    if position is None:
        return data, False
    return data[:position] + _OPAQUE + data[position:], True


def _too_deep(data: bytes, limit: int) -> int | None:
    """Where the header section of the first entity at depth ``limit`` that nests further starts."""
    position, depth, default = 0, 0, b"text/plain"
    stack: list[_Multipart] = []
    while True:
        if data.startswith(b"\n", position):
            head, body = b"", position + 1
        else:
            end = data.find(b"\n\n", position)
            if end < 0:
                return None
            head, body = data[position:end + 1], end + 2
        ctype, boundary = _content_type(head, default)
        nests = ctype.startswith(b"message/") and ctype != b"message/delivery-status"
        if nests or (ctype.startswith(b"multipart/") and boundary):
            if depth >= limit:
                return position
        if nests:
            position, depth, default = body, depth + 1, b"text/plain"
            continue
        if ctype.startswith(b"multipart/") and boundary:
            stack.append(_Multipart(boundary, depth, ctype == b"multipart/digest"))
        found = _next_part(data, body, stack)
        if found is None:
            return None
        position, parent = found
        depth = parent.depth + 1
        default = b"message/rfc822" if parent.digest else b"text/plain"


def _next_part(data: bytes, start: int, stack: list[_Multipart]) -> tuple[int, _Multipart] | None:
    """The start of the next part of any open multipart, popping those that close on the way."""
    for line in _dash_lines(data, start):
        end = data.find(b"\n", line)
        end = len(data) if end < 0 else end
        text = data[line + 2:end].rstrip(b" \t")
        for level in range(len(stack) - 1, -1, -1):
            boundary = stack[level].boundary
            if text == boundary:
                del stack[level + 1:]
                return end + 1, stack[level]
            if text == boundary + b"--":
                del stack[level:]
                break
    return None


def _dash_lines(data: bytes, start: int) -> Iterator[int]:
    """Where the lines from ``start`` (a line's start, never 0) on that begin with "--" start."""
    line = start if data.startswith(b"--", start) else data.find(b"\n--", start) + 1
    while line > 0:
        yield line
        line = data.find(b"\n--", line) + 1


def _content_type(head: bytes, default: bytes) -> tuple[bytes, bytes]:
    match = _CONTENT_TYPE.search(head)
    if match is None:
        return default, b""
    value = b" ".join(match.group(1).split())
    ctype = value.split(b";", 1)[0].strip().lower()
    if ctype.count(b"/") != 1:
        return b"text/plain", b""
    boundary = _BOUNDARY.search(value)
    return ctype, (boundary.group(1) or boundary.group(2) or b"") if boundary else b""
