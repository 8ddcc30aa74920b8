"""Mend a raw header section the stdlib parser would cut short.

The parser ends the header section at the first line that is no
``Name: value`` header and no continuation, and reads everything after it as
body. Two shapes of real mail hit that and lose their From and Subject:

- junk before the headers: a line like "---- Original message ----" or an
  mbox ``>From `` line that a program wrote above a saved mail;
- a long header folded without the leading blank, so its continuation line
  looks like neither a header nor a continuation.

``mend()`` skips the first and re-folds the second, each only when real
headers follow, and says what it did.
"""

from __future__ import annotations

import re

__all__ = ["header_start", "mend"]

_HEADER_LINE = re.compile(rb"[!-9;-~]+[ \t]*:")
_STRAY_LINE = re.compile(rb"^(?![!-9;-~]+[ \t]*:|[ \t])[^\n]", re.MULTILINE)
"""A line inside the header section that is neither a header nor a continuation."""
_USABLE = re.compile(
    rb"^(?:from|sender|to|cc|subject|date|message-id|reply-to|in-reply-to|references)[ \t]*:",
    re.IGNORECASE | re.MULTILINE,
)
_MAX_JUNK_LINES = 10


def mend(data: bytes) -> tuple[bytes, list[str]]:
    """``data`` (LF line endings) with leading junk skipped and unfolded continuations re-folded."""
    defects = []
    start = header_start(data)
    if start:
        skipped = data[:start].count(b"\n")
        defects.append(f"{skipped} line{'s' if skipped > 1 else ''} before the header section skipped")
        data = data[start:]
    data, joined = _refold(data)
    if joined:
        defects.append(f"{joined} header line{'s' if joined > 1 else ''} without a name joined to the "
                       "header before (a continuation that lost its leading blank)")
    return data, defects


def header_start(data: bytes) -> int:
    """Where the header section starts: 0, or past junk lines when real headers follow them."""
    if _HEADER_LINE.match(data) or data.startswith(b"From "):
        return 0
    position = 0
    for _ in range(_MAX_JUNK_LINES):
        end = data.find(b"\n", position)
        if end < 0:
            return 0
        position = end + 1
        if _headers_follow(data, position):
            return position
    return 0


def _headers_follow(data: bytes, position: int) -> bool:
    """Whether two header lines start at ``position``, in a section with a header worth having."""
    first_end = data.find(b"\n", position)
    if first_end < 0 or not _HEADER_LINE.match(data, position):
        return False
    if not (_HEADER_LINE.match(data, first_end + 1) or data.startswith((b" ", b"\t"), first_end + 1)):
        return False
    end = data.find(b"\n\n", position)
    return _USABLE.search(data, position, len(data) if end < 0 else end) is not None


def _refold(data: bytes) -> tuple[bytes, int]:
    end = data.find(b"\n\n")
    head_end = len(data) if end < 0 else end + 1
    first = data.find(b"\n") + 1 if data.startswith(b"From ") else 0
    if not _STRAY_LINE.search(data, first, head_end):
        return data, 0
    lines = data[first:head_end].split(b"\n")
    joined = 0
    header_follows = False  # whether the next line that is no stray line is a header
    for index in range(len(lines) - 1, 0, -1):
        line = lines[index]
        if _HEADER_LINE.match(line):
            header_follows = True
        elif not line or line[:1] in b" \t":
            header_follows = False
        elif header_follows:
            lines[index] = b" " + line
            joined += 1
    return data[:first] + b"\n".join(lines) + data[head_end:], joined
