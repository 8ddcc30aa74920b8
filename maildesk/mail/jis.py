"""ISO-2022-JP as Microsoft writes it (its code pages 50220 and 50221).

Outlook and Windows mail label text ISO-2022-JP but put the characters of
Windows' Shift_JIS (CP932) into it: circled digits and other NEC row 13
symbols, and the NEC-selected IBM kanji. No Python codec reads those under
the plain JIS X 0208 escape. Each two-byte JIS code maps to one Shift_JIS
code by arithmetic (JIS X 0208 Annex 1), so the text is rewritten as
Shift_JIS and decoded as CP932, which knows every one of them.
"""

from __future__ import annotations

import re

__all__ = ["decode_microsoft"]

_ESCAPE = re.compile(rb"\x1b(\(B|\(J|\(I|\$@|\$B)")
_ROMAN, _KANA = (b"(B", b"(J"), b"(I"
_PAIR = re.compile(rb"[\x21-\x7e]{2}")
_KANA_BYTES = re.compile(rb"[\x21-\x5f]*")


def decode_microsoft(data: bytes) -> str | None:
    """``data`` decoded as Microsoft's ISO-2022-JP, or None when it is not that."""
    shift_jis = bytearray()
    mode, position = b"(B", 0
    for escape in [*_ESCAPE.finditer(data), None]:
        segment = data[position:escape.start() if escape else len(data)]
        converted = _segment(segment, mode)
        if converted is None:
            return None
        shift_jis += converted
        if escape:
            mode, position = escape.group(1), escape.end()
    try:
        return bytes(shift_jis).decode("cp932")
    except UnicodeDecodeError:
        return None


def _segment(segment: bytes, mode: bytes) -> bytes | None:
    if mode in _ROMAN:
        return segment if segment.isascii() and b"\x1b" not in segment else None
    if mode == _KANA:
        return bytes(b + 0x80 for b in segment) if _KANA_BYTES.fullmatch(segment) else None
    lines = segment.split(b"\n")  # a kanji run may go on past a line break
    if any(len(line) % 2 or _PAIR.sub(b"", line) for line in lines):
        return None
    return b"\n".join(_PAIR.sub(lambda pair: _shift_jis(pair.group(0)), line) for line in lines)


def _shift_jis(pair: bytes) -> bytes:
    first, second = pair
    lead = (first + 1) // 2 + (0x70 if first <= 0x5E else 0xB0)
    if first % 2:
        trail = second + (0x1F if second <= 0x5F else 0x20)
    else:
        trail = second + 0x7E
    return bytes((lead, trail))
