"""Turn bytes in a declared (often wrong) mail charset into text.

Mail clients label text with the charset they think they used: GB2312 when
they wrote GBK, ISO-8859-1 when they wrote Windows-1252, us-ascii when they
wrote UTF-8, or names Python has never heard of. Decoding goes through the
superset of the declared charset, then UTF-8, then charset-normalizer's
guess, and only then replacement characters. Each fallback is reported as a
defect so the caller can record it.
"""

from __future__ import annotations

import binascii
import codecs
import re

import charset_normalizer

from maildesk.mail import jis

# Declared label -> codec actually used, which is a superset of the label.
# None means "no usable label": detect from the bytes.
_ALIASES: dict[str, str | None] = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cp936": "gb18030",
    "windows-936": "gb18030",
    "euc-cn": "gb18030",
    "x-euc-cn": "gb18030",
    "csgb2312": "gb18030",
    "gb_2312-80": "gb18030",
    "chinese": "gb18030",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "s-jis": "cp932",
    "ms_kanji": "cp932",
    "csshiftjis": "cp932",
    "windows-31j": "cp932",
    "x-ms-cp932": "cp932",
    "x-euc-jp": "euc_jp",
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "iso_8859-1": "cp1252",
    "iso-8859-1:1987": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "l1": "cp1252",
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "ansi_x3.4-1968": "cp1252",
    "iso646-us": "cp1252",
    "us": "cp1252",
    "iso-8859-9": "cp1254",
    "latin5": "cp1254",
    "euc-kr": "cp949",
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "ksc5601": "cp949",
    "ksc_5601": "cp949",
    "x-windows-949": "cp949",
    "windows-949": "cp949",
    "korean": "cp949",
    "iso-8859-11": "cp874",
    "tis-620": "cp874",
    "tis620": "cp874",
    "windows-874": "cp874",
    "x-windows-874": "cp874",
    "big5": "big5hkscs",
    "x-big5": "big5hkscs",
    "cn-big5": "big5hkscs",
    "big-5": "big5hkscs",
    "x-x-big5": "big5hkscs",
    "utf8": "utf-8",
    "utf-8-sig": "utf-8-sig",
    "x-utf-8": "utf-8",
    "utf8mb4": "utf-8",
    "iso-10646-ucs-2": "utf-16-be",
    "csunicode": "utf-16-be",
    "unicode-1-1-utf-7": "utf-7",
    "x-unicode-2-0-utf-7": "utf-7",
    "unicode-2-0-utf-7": "utf-7",
    "iso-2022-jp": "iso2022_jp_ext",
    "iso2022-jp": "iso2022_jp_ext",
    "iso8859-11": "cp874",
    "iso8859-9": "cp1254",
    "csiso2022jp": "iso2022_jp_ext",
    "_iso-2022-jp$esc": "iso2022_jp_ext",  # Outlook Express
    # Bidi ordering hints (RFC 1556): the bytes are plain ISO-8859-6/8.
    "iso-8859-6-i": "iso8859-6",
    "iso-8859-6-e": "iso8859-6",
    "csiso88596i": "iso8859-6",
    "csiso88596e": "iso8859-6",
    "iso-8859-8-i": "iso8859-8",
    "iso-8859-8-e": "iso8859-8",
    "csiso88598i": "iso8859-8",
    "csiso88598e": "iso8859-8",
    "x-mac-roman": "mac-roman",
    "x-mac-cyrillic": "mac-cyrillic",
    "x-unknown": None,
    "unknown": None,
    "unknown-8bit": None,
    "x-user-defined": None,
    "default": None,
    "charset": None,
    "none": None,
}

# Codecs that are plain ASCII for bytes < 0x80, where a UTF-8 reading of
# 8-bit bytes is far more likely than the label being right.
_UTF8_FIRST = {"cp1252", "cp1254", None}

_MICROSOFT_JIS = "iso-2022-jp as Microsoft writes it"
"""Not a Python codec: jis.decode_microsoft()."""

# If the superset codec fails, these are worth a try, in order: the label's
# own codec, or (ISO-2022-JP) the other supersets and Microsoft's variant.
_MORE_CHOICES = {
    "gb18030": ("gb2312",),
    "cp932": ("shift_jis_2004",),
    "cp949": ("euc_kr",),
    "big5hkscs": ("big5",),
    "iso2022_jp_ext": ("iso2022_jp_2004", "iso2022_jp_2", "iso2022_jp_3", _MICROSOFT_JIS),
    "cp1252": ("latin-1",),
}

_CP_DASH = re.compile(r"^(?:cp|ibm|windows|win|x-cp|ms)[-_ ]?(\d{3,5})$")


# Python text codecs that are no charset any mail is written in: escape
# notations and the host-name codecs. Such a label is junk to detect past.
_NOT_MAIL_CHARSETS = {"unicode-escape", "raw-unicode-escape", "punycode", "idna", "undefined"}

_SURROGATE = re.compile("[\ud800-\udfff]")


def storable(text: str) -> str:
    """``text`` as any database can store it: NUL dropped, a lone surrogate replaced by U+FFFD.

    No mail may carry NUL in text (RFC 5322, RFC 2045); PostgreSQL refuses
    both, and no driver can encode a surrogate.
    """
    return _SURROGATE.sub("\ufffd", text.replace("\x00", ""))


def body_charset(message) -> str | None:
    """The charset declared for a message's text: its own, else its first text part's.

    8-bit bytes in its headers are most likely in it too.
    """
    for part in message.walk():
        if part.get_content_maintype() in ("text", "multipart"):
            try:
                label = part.get_content_charset()
            except Exception:  # a broken parameter: no label
                label = None
            if label:
                return label
    return None


def codec_for(label: str | None) -> str | None:
    """Name of the Python codec to use for a declared charset label.

    Returns None when the label is missing, unknown or junk (such as
    "136"), which means the bytes should be detected instead.
    """
    if not label:
        return None
    name = str(label).strip().strip("\"'").strip().lower()
    name = name.split("*", 1)[0]  # RFC 2231 language suffix: utf-8*en
    if name in _ALIASES:
        return _ALIASES[name]
    if name.isdigit():
        return None
    match = _CP_DASH.match(name)
    if match:
        name = "cp" + match.group(1)
    try:
        found = codecs.lookup(name).name
    except (LookupError, ValueError):
        return None
    if not _is_text_codec(found) or found in _NOT_MAIL_CHARSETS:
        return None
    return _ALIASES.get(found.replace("_", "-"), found)


def _is_text_codec(name: str) -> bool:
    try:
        return codecs.lookup(name)._is_text_encoding  # type: ignore[attr-defined]
    except (LookupError, AttributeError):
        return False


def decode(data: bytes, label: str | None) -> tuple[str, str | None]:
    """Decode mail bytes declared as ``label``.

    Returns the text and a one-line defect, or None when the bytes decoded
    cleanly under the label (or its superset). The text is ``storable``.
    """
    text, defect = _decode(data, label)
    return storable(text), defect


def _decode(data: bytes, label: str | None) -> tuple[str, str | None]:
    if not data:
        return "", None
    codec = codec_for(label)
    shown = label if label else "none"
    if codec is None and data.isascii():
        return data.decode("ascii"), None
    if codec in _UTF8_FIRST and not data.isascii():
        text = _strict(data, "utf-8")
        if text is not None:
            if codec is None and label:
                return text, f"unknown charset {shown!r}; decoded as UTF-8"
            if codec is not None:
                return text, f"charset {shown!r} mislabels UTF-8 bytes; decoded as UTF-8"
            return text, None
    if codec is not None:
        for candidate in (codec, *_MORE_CHOICES.get(codec, ())):
            text = _strict(data, candidate)
            if text is not None:
                return text, None
        text = _strict(data, "utf-8")
        if text is not None:
            return text, f"bytes are not valid {shown!r}; decoded as UTF-8"
    detected = _guess_short(data) if len(data) <= _SHORT else None
    detected = detected or _detect(data)
    if detected is not None:
        text, guess = detected
        if not label:
            return text, f"no charset declared; detected {guess}"
        reason = "unknown charset" if codec is None else "bytes do not match charset"
        return text, f"{reason} {shown!r}; detected {guess}"
    fallback = codec or "utf-8"
    try:
        text = data.decode(fallback, "replace")
    except (UnicodeError, LookupError, ValueError):  # a codec that knows no "replace"
        fallback = "utf-8"
        text = data.decode(fallback, "replace")
    return text, f"could not decode charset {shown!r}; used {fallback} with replacement characters"


def decode_lenient(data: bytes, label: str | None) -> str:
    """Like decode(), for callers that have nowhere to put a defect."""
    return decode(data, label)[0]


def _strict(data: bytes, codec: str) -> str | None:
    if codec == _MICROSOFT_JIS:
        return jis.decode_microsoft(data)
    try:
        text = data.decode(codec)
    except (UnicodeError, LookupError, ValueError):
        return None
    if has_surrogates(text):
        return None
    return text


def has_surrogates(text: str) -> bool:
    """Whether ``text`` holds a surrogate: an undecodable byte kept by surrogateescape, or junk."""
    return _SURROGATE.search(text) is not None


_SHORT = 200
_CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
"""Bytes up to which ``_guess_short`` guesses before charset-normalizer, which needs more text."""


def _guess_short(data: bytes) -> tuple[str, str] | None:
    """The likeliest reading of a few 8-bit bytes (a name in a header): CJK, then the common code pages.

    charset-normalizer reads a two-character Chinese name as Big5 or CP775
    as readily as GB18030. Here each candidate that decodes strictly is
    scored by how much of its non-ASCII text is common in that script: the
    first level of GB2312, kana and JIS level-1 kanji, KS X 1001 Hangul, the
    frequent Big5 hanzi, accented Latin letters among ASCII ones, Cyrillic
    among Cyrillic. A CJK reading of at least half common characters wins;
    else a single-byte one. On a tie the earlier candidate wins (a Korean
    name is also valid GB2312 level 1; the body's charset, tried before,
    tells them apart).
    """
    if _CONTROL_BYTES.search(data):
        return None  # no name or subject has them: junk, for charset-normalizer
    for tier in _SHORT_CANDIDATES:
        best, best_score = None, 0.49  # at least half
        for codec, common in tier:
            text = _strict(data, codec)
            if text is None:
                continue
            foreign = [(i, c) for i, c in enumerate(text) if not c.isascii()]
            score = sum(1 for i, c in foreign if common(text, i, c)) / len(foreign) if foreign else 0
            if score > best_score:
                best, best_score = (text, codec), score
        if best is not None:
            return best
    return None


def _lead_byte_in(legacy: str, low: int, high: int, first: str, last: str):
    """Common: a character from ``first`` to ``last`` whose ``legacy`` code starts with a byte from
    ``low`` to ``high``, with no Latin letter right beside it (the trail byte of a misread
    accented Latin letter is often the plain letter after it: "Ávila" as Big5)."""
    def common(text: str, index: int, char: str) -> bool:
        if not first <= char <= last or _beside_latin(text, index):
            return False
        try:
            encoded = char.encode(legacy)
        except UnicodeEncodeError:
            return False
        return len(encoded) == 2 and low <= encoded[0] <= high
    return common


def _beside_latin(text: str, index: int) -> bool:
    neighbours = text[max(index - 1, 0):index] + text[index + 1:index + 2]
    return any(n.isascii() and n.isalpha() for n in neighbours)


def _japanese(text: str, index: int, char: str) -> bool:
    kana = "\u3040" <= char <= "\u30ff" and not _beside_latin(text, index)
    return kana or _jis_level_1(text, index, char)


def _among_ascii_letters(text: str, index: int, char: str) -> bool:
    """An accented letter in a word with plain letters (Müller), or a word of its own (à)."""
    neighbours = text[max(index - 1, 0):index] + text[index + 1:index + 2]
    return char.isalpha() and (_beside_latin(text, index) or not any(n.isalpha() for n in neighbours))


def _among_cyrillic(text: str, index: int, char: str) -> bool:
    return "\u0400" <= char <= "\u04ff" and not _beside_latin(text, index)


_IDEOGRAPHS = ("\u4e00", "\u9fff")
_jis_level_1 = _lead_byte_in("shift_jis", 0x88, 0x98, *_IDEOGRAPHS)
_SHORT_CANDIDATES = (
    (  # first: CJK, which a single-byte code page would read as plausible-looking letters
        ("gb18030", _lead_byte_in("gb2312", 0xB0, 0xD7, *_IDEOGRAPHS)),
        ("cp932", _japanese),
        ("cp949", _lead_byte_in("euc_kr", 0xB0, 0xC8, "\uac00", "\ud7a3")),
        ("big5hkscs", _lead_byte_in("big5", 0xA4, 0xC6, *_IDEOGRAPHS)),
    ),
    (("cp1252", _among_ascii_letters), ("cp1251", _among_cyrillic)),
)


def _detect(data: bytes) -> tuple[str, str] | None:
    try:
        best = charset_normalizer.from_bytes(data).best()
    except Exception:  # the detector must never take the parser down
        return None
    if best is None or best.encoding is None:
        return None
    text = str(best)
    if has_surrogates(text):
        return None
    return text, best.encoding


# RFC 2047 encoded word; spaces inside are tolerated because some mailers
# forget to encode them.
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")
_FOLD = re.compile(r"\r?\n(?=[ \t])")


def header_text(raw: str, words: bool = True, hint: str | None = None) -> tuple[str, list[str]]:
    """Decode a raw header value: unfold, decode 8-bit bytes, then RFC 2047.

    ``raw`` is a value as the stdlib's compat32 parser stores it, with
    undecodable 8-bit bytes carried as surrogate escapes. With ``words``
    false, encoded words are left for the caller (address headers must be
    split before their display names are decoded). ``hint`` is a charset to
    try for raw 8-bit bytes, usually the body's. Returns the text, made
    ``storable``, and a list of defects.
    """
    defects: list[str] = []
    text = _FOLD.sub("", str(raw)).replace("\r", "").replace("\n", " ").replace("\x00", "")
    if has_surrogates(text):
        try:
            data = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a surrogate that stands for no byte
            data = storable(text).encode("utf-8", "surrogateescape")
        text, defect = _header_bytes(data, hint)
        if defect:
            defects.append(f"8-bit header: {defect}")
    if not words:
        return text, defects
    text, word_defects = decode_words(text)
    return text, defects + word_defects


def _header_bytes(data: bytes, hint: str | None) -> tuple[str, str | None]:
    """8-bit header bytes in the body's charset ``hint``, unless that is a Latin code page (which
    reads any bytes) and they are plainly in another script: a Chinese name over a Latin-1 body."""
    codec = codec_for(hint)
    if codec in _UTF8_FIRST and codec is not None and len(data) <= _SHORT and _strict(data, "utf-8") is None:
        guess = _guess_short(data)
        if guess is not None and guess[1] != codec:
            return storable(guess[0]), f"not in the body's charset {hint!r}; detected {guess[1]}"
    return decode(data, hint)


def decode_words(value: str) -> tuple[str, list[str]]:
    """Decode RFC 2047 encoded words, joining adjacent ones."""
    if "=?" not in value:
        return value, []
    pieces: list[list] = []  # ["text", str] or ["word", label, bytes]
    pos = 0
    for match in _ENCODED_WORD.finditer(value):
        between = value[pos : match.start()]
        follows_word = bool(pieces) and pieces[-1][0] == "word"
        if between and not (follows_word and not between.strip()):
            pieces.append(["text", between])
        data = _word_bytes(match.group(2), match.group(3))
        label = match.group(1)
        if data is None:
            pieces.append(["text", match.group(0)])
        elif pieces and pieces[-1][0] == "word" and pieces[-1][1].lower() == label.lower():
            pieces[-1][2] += data  # a character may be split across words
        else:
            pieces.append(["word", label, data])
        pos = match.end()
    pieces.append(["text", value[pos:]])
    out: list[str] = []
    defects: list[str] = []
    for piece in pieces:
        if piece[0] == "text":
            out.append(piece[1])
            continue
        text, defect = decode(piece[2], piece[1])
        out.append(text)
        if defect:
            defects.append(f"encoded word: {defect}")
    return "".join(out), defects


def _word_bytes(kind: str, payload: str) -> bytes | None:
    try:
        if kind in "bB":
            cleaned = re.sub(r"[^A-Za-z0-9+/]", "", payload)
            cleaned += "=" * (-len(cleaned) % 4)
            if len(cleaned) % 4 == 1:
                cleaned = cleaned[:-1]
            return binascii.a2b_base64(cleaned)
        return binascii.a2b_qp(payload.encode("ascii", "replace"), header=True)
    except (binascii.Error, ValueError):
        return None
