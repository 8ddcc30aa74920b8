"""Reading the DATA part of an SMTP/LMTP transaction, byte for byte.

aiosmtpd's own reader refuses lines longer than 1000 octets with a permanent
500 and mishandles bare-LF mail longer than that. Refusing real mail is worse
than storing odd mail, so this reader keeps whatever arrives (within the size
limit) exactly as sent, only undoing the sender's dot-stuffing.

The end of DATA is a line ``.`` ending in CRLF after a line ending in CRLF,
nothing else: a bare-LF variant is content, never an end (that ambiguity is
what "SMTP smuggling" exploits).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Data:
    content: bytes
    too_big: bool


async def read_data(reader: asyncio.StreamReader, limit: int, *, progress: Callable[[], None]) -> Data | None:
    """Read up to the end-of-data line; None when the peer went away first.

    Past ``limit`` bytes the rest is read and dropped (the reply comes only
    after the end of data, RFC 5321 4.2.5). ``progress`` is called for every
    piece read, so a long upload is not mistaken for an idle session.
    """
    chunks: list[bytes] = []
    size = 0
    too_big = False
    tail = b"\r\n"  # the last two bytes received: a line ending in CRLF came "before" the data
    while True:
        try:
            piece = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError as exc:
            # A line longer than the reader's buffer: take it in pieces.
            piece = await reader.read(max(exc.consumed, 1))
        except asyncio.IncompleteReadError:
            return None
        if not piece:
            return None
        progress()
        line_start = tail.endswith(b"\n")
        if line_start and tail == b"\r\n" and piece == b".\r\n":
            return Data(b"".join(chunks), too_big)
        tail = (tail + piece)[-2:]
        if line_start and piece.startswith(b"."):
            piece = piece[1:]
        size += len(piece)
        if size > limit:
            too_big = True
            chunks.clear()
        elif not too_big:
            chunks.append(piece)
