"""Raw message bytes -> ParsedMail: addresses, ids, date, body text, attachments.

parse() never raises: whatever the bytes, the worst result is a ParsedMail
whose ``defects`` say what was wrong. headfix.py mends a header section the
stdlib would cut short and nesting.py caps how deep MIME nests; then the
stdlib parser (compat32 policy, the most forgiving one) builds the MIME
tree; charsets.py decodes text; addresses.py reads the address headers;
attachments.py names and decodes attachments; htmltext.py turns HTML into
readable text; quotes.py finds the new text. Address, Attachment, html_to_text, message_bytes and
safe_filename are re-exported here, so callers can keep importing them
from this module.
"""

from __future__ import annotations

import dataclasses
import email.errors
import email.message
import email.parser
import email.policy
import email.utils
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from maildesk.mail import addresses, charsets, headfix, nesting, quotes
from maildesk.mail.addresses import Address
from maildesk.mail.attachments import (
    Attachment,
    Part,
    as_bytes,
    forwarded_name,
    message_bytes,
    name_attachments,
    safe_call,
    safe_filename,
)
from maildesk.mail.htmltext import html_to_text

SYNTHETIC_ID_DOMAIN = "maildesk.invalid"
MAX_IDS = 100
"""Message-IDs kept of an In-Reply-To or References header (see ``_capped``)."""
MAX_DEPTH = 50
"""MIME levels (multiparts and attached messages) read; anything deeper is kept as one attachment."""
_HEADER_LINE = re.compile(rb"^[!-9;-~]+[ \t]*:")
_MBOX_FROM = re.compile(rb"^From [^\r\n]*\r?\n")
_MBOX_FROM_LINE = re.compile(rb"From [^\r\n]*\r?\n")  # _MBOX_FROM, to match at a position
_LEADING_SPACE = re.compile(rb"[\r\n \t]*")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_JUNK_SCAN = 64 * 1024
"""Bytes unusable_reason() reads for real headers after junk lines (headfix.header_start)."""
_LONG_LINE = re.compile(rb"^[^\n]{999}", re.MULTILINE)
_MAX_BOUNDARY = 70  # RFC 2046 §5.1.1
_KNOWN_ENCODINGS = {
    "", "7bit", "8bit", "binary", "base64", "quoted-printable", "x-uuencode", "uuencode", "x-uue", "uue",
}  # fmt: skip
_BASE64_DEFECTS = (
    email.errors.InvalidBase64CharactersDefect,
    email.errors.InvalidBase64LengthDefect,
    email.errors.InvalidBase64PaddingDefect,
)
_BIDI_CONTROL = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_USABLE_HEADERS = {
    "from", "sender", "reply-to", "return-path", "to", "cc", "bcc",
    "delivered-to", "x-original-to", "envelope-to", "subject", "date",
    "message-id", "in-reply-to", "references",
}  # fmt: skip


@dataclass(frozen=True, eq=False)
class ParsedMail:
    """Everything maildesk needs from one message; ``defects`` says what was wrong."""

    sender: Address
    to: list[Address]
    cc: list[Address]
    reply_to: list[Address]
    subject: str
    date: datetime | None
    message_id: str
    message_id_synthesized: bool
    in_reply_to: list[str]
    references: list[str]
    text: str
    html: str | None
    new_text: str
    attachments: list[Attachment]
    defects: list[str]
    headers: list[tuple[str, str]]
    message: email.message.Message = field(repr=False)


__all__ = [
    "Address",
    "Attachment",
    "ParsedMail",
    "extract_ids",
    "html_to_text",
    "message_bytes",
    "parse",
    "safe_filename",
    "unusable_reason",
    "with_envelope_sender",
]


def parse(raw: bytes) -> ParsedMail:
    """Parse one message; never raises."""
    original = as_bytes(raw)
    data = original.replace(b"\r\n", b"\n")
    defects = _line_ending_defects(original, data)
    data, mended = headfix.mend(data)
    defects += mended + _header_section_defects(data)
    try:
        return _parse(data, defects)
    except Exception as exc:  # last line of defence
        return _fallback(data, defects, exc)


def with_envelope_sender(parsed: ParsedMail, mail_from: str | None) -> ParsedMail:
    """``parsed``, its sender taken from the envelope (SMTP MAIL FROM) when no header gave one.

    A null reverse path (a bounce) gives none, and ``parsed`` is returned as it is.
    """
    if parsed.sender.address or not mail_from:
        return parsed
    found = next((a for a in addresses.addresses(mail_from, "MAIL FROM", []) if a.address), None)
    if found is None or "@" not in found.address:
        return parsed
    defects = [d for d in parsed.defects if d != addresses.NO_SENDER]
    defects.append("no sender in the headers; taken from the envelope (MAIL FROM)")
    return dataclasses.replace(parsed, sender=Address(parsed.sender.name, found.address), defects=defects)


def _line_ending_defects(original: bytes, data: bytes) -> list[str]:
    """Bare LF in ``original``, which ``data`` is with CRLF made LF."""
    crlf = len(original) - len(data)  # each CRLF lost its CR
    if not crlf and b"\n" in data:
        return ["bare LF line endings, not CRLF"]
    if crlf and (bare := data.count(b"\n") - crlf):
        return [f"mixed line endings: {bare} bare LF among CRLF"]
    return []


def _header_section_defects(data: bytes) -> list[str]:
    """What only the raw header section shows: NUL bytes and overlong lines."""
    defects = []
    end = data.find(b"\n\n")
    head = data if end < 0 else data[:end + 1]
    if b"\x00" in head:
        defects.append("NUL byte in the header section; removed")
    if _LONG_LINE.search(head):
        defects.append("header line longer than 998 characters (RFC 5322 §2.1.1)")
    return defects


def unusable_reason(raw: bytes) -> str | None:
    """Why ``raw`` is not an RFC 5322 message, or None if it looks like one."""
    data = as_bytes(raw)
    if not data or data.isspace():
        return "empty input"
    # Only the header section is read (a copy of a large body would cost more than the rest).
    start = _LEADING_SPACE.match(data).end()  # type: ignore[union-attr] - it matches the empty string too
    mbox_from = _MBOX_FROM_LINE.match(data, start)
    if mbox_from:
        start = mbox_from.end()
    blank_line = _BLANK_LINE.search(data, start)
    head = data[start:blank_line.start() if blank_line else len(data)]
    if not _HEADER_LINE.match(head):
        if headfix.header_start(data[start:start + _JUNK_SCAN].replace(b"\r\n", b"\n")):
            return None  # junk lines, then real headers with a usable one among them
        return "no header section: the first line is not a 'Name: value' header"
    names = {
        m.group(1).decode("ascii").lower()
        for m in re.finditer(rb"^([!-9;-~]+)[ \t]*:", head, re.MULTILINE)
    }
    if not names & _USABLE_HEADERS and not any(n.startswith("resent-") for n in names):
        return "no From/To/Subject/Date/Message-ID header of any kind"
    return None


def extract_ids(value: str) -> list[str]:
    """Message ids in ``value``, with angle brackets, in order."""
    if not value:
        return []
    text = str(value)
    for _ in range(5):
        text = re.sub(r"\([^()]*\)", " ", text)
    ids = []
    for match in re.finditer(r"<([^<>]*)>|([^\s<>,;()\"]+@[^\s<>,;()\"]+)", text):
        inner = "".join((match.group(1) if match.group(1) is not None else match.group(2)).split())
        if inner:
            ids.append(f"<{inner}>")
    return ids


@dataclass(frozen=True)
class _Fields:
    """What the header section says."""

    sender: Address
    to: list[Address]
    cc: list[Address]
    reply_to: list[Address]
    subject: str
    date: datetime | None
    message_id: str
    message_id_synthesized: bool
    in_reply_to: list[str]
    references: list[str]
    headers: list[tuple[str, str]]


def _parse(data: bytes, defects: list[str]) -> ParsedMail:
    defects = list(defects)  # the caller's stay as they were for _fallback
    capped, cut = nesting.cap_depth(data, MAX_DEPTH)
    message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(capped)
    eight_bit = not all(str(value).isascii() for _, value in message.raw_items())
    hint = safe_call(charsets.body_charset, message) if eight_bit else None  # only 8-bit headers need it
    fields = _fields(message, data, hint, defects)
    if cut:
        defects.append(f"MIME nesting deeper than {MAX_DEPTH} levels; the deeper parts kept as one attachment")

    body = _Body()
    _walk(message, body, 0, defects)
    html = "\n".join(body.html) if body.html else None
    if body.plain:
        text = "\n".join(body.plain)
    elif html is not None:
        text = html_to_text(html)
    else:
        text = ""
    text = _clean_text(text)
    attachments = name_attachments(body.parts)
    defects.extend(_decoding_defects(body))
    defects.extend(_attachment_defects(attachments))
    return ParsedMail(
        **vars(fields),
        text=text,
        html=html,
        new_text=quotes.new_text(text),
        attachments=attachments,
        defects=list(dict.fromkeys(defects)),
        message=message,
    )


def _fields(message: email.message.Message, data: bytes, hint: str | None, defects: list[str]) -> _Fields:
    headers = _decoded_headers(message, hint, defects)
    first = _first_values(headers)
    raw = addresses.address_fields(message, hint)
    sender = addresses.sender(raw, defects)
    message_id, synthesized = _message_id(first.get("message-id", ""), data, defects)
    return _Fields(
        sender=sender,
        to=addresses.addresses(raw.get("to", ""), "To", defects),
        cc=addresses.addresses(raw.get("cc", ""), "Cc", defects),
        reply_to=addresses.addresses(raw.get("reply-to", ""), "Reply-To", defects),
        subject=" ".join(first.get("subject", "").split()),
        date=_date(first.get("date"), defects),
        message_id=message_id,
        message_id_synthesized=synthesized,
        in_reply_to=_capped(
            extract_ids(" ".join(v for n, v in headers if n.lower() == "in-reply-to")), "In-Reply-To", defects),
        references=_capped(list(
            dict.fromkeys(extract_ids(" ".join(v for n, v in headers if n.lower() == "references")))
        ), "References", defects),
        headers=headers,
    )


def _fallback(data: bytes, defects: list[str], exc: BaseException) -> ParsedMail:
    """The header section alone (which the stdlib reads without recursion), the rest as text."""
    defects = [*defects, f"message could not be parsed ({type(exc).__name__}); kept as text"]
    try:
        message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(data, headersonly=True)
        fields = _fields(message, data, None, defects)
    except Exception:
        message = email.message.Message()
        fields = _Fields(Address("", ""), [], [], [], "", None, _synthetic_id(data), True, [], [], [])
    text = _clean_text(charsets.decode_lenient(data, None))
    return ParsedMail(
        **vars(fields),
        text=text,
        html=None,
        new_text=text,
        attachments=[],
        defects=list(dict.fromkeys(defects)),
        message=message,
    )


def _decoded_headers(
    message: email.message.Message, hint: str | None, defects: list[str]
) -> list[tuple[str, str]]:
    pairs = []
    for name, value in message.raw_items():
        name = str(name).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        text, found = charsets.header_text(value, hint=hint)
        defects.extend(f"{name}: {d}" for d in found)
        pairs.append((name, text))
    return pairs


def _first_values(headers: list[tuple[str, str]]) -> dict[str, str]:
    first: dict[str, str] = {}
    for name, value in headers:
        first.setdefault(name.lower(), value)
    return first


# --- date and ids ----------------------------------------------------------


def _date(value: str | None, defects: list[str]) -> datetime | None:
    if value is None:
        defects.append("no Date header")
        return None
    text = " ".join(value.split())
    text = re.sub(r"\b(?:GMT|UTC|UT)\s*([+-]\d{2}):?(\d{2})\b", r"\1\2", text)
    text = re.sub(r"([+-]\d{2}):(\d{2})\b(?!:)", r"\1\2", text)
    parsed = None
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        parsed = _loose_date(value.strip())
    if parsed is None:
        defects.append(f"unparseable Date {value.strip()!r}")
        return None
    if parsed.tzinfo is None:
        defects.append("Date has no time zone; assumed UTC")
        parsed = parsed.replace(tzinfo=UTC)
    try:
        parsed.astimezone(UTC)  # what storing it does
    except OverflowError:
        defects.append(f"Date {value.strip()!r} is out of range in UTC")
        return None
    return parsed


_LOOSE_FORMATS = (
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%Y-%m-%d %H:%M:%S %z",
    "%Y-%m-%d %H:%M:%S",
    "%Y/%m/%d %H:%M:%S",
    "%d/%m/%Y %H:%M:%S",
    "%a %b %d %H:%M:%S %Y",
)


def _loose_date(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        pass
    for fmt in _LOOSE_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


def _message_id(value: str, data: bytes, defects: list[str]) -> tuple[str, bool]:
    ids = extract_ids(value)
    if ids:
        if not value.strip().startswith("<"):
            defects.append(f"malformed Message-ID {value.strip()!r} normalised to {ids[0]}")
        return ids[0], False
    token = "".join(value.split())
    if token and re.fullmatch(r"[!-;=?-~]{3,}", token):
        defects.append(f"malformed Message-ID {token!r} normalised")
        return f"<{token}>", False
    defects.append(
        "no usable Message-ID; synthesized one" if token else "no Message-ID; synthesized one"
    )
    return _synthetic_id(data), True


def _capped(ids: list[str], name: str, defects: list[str]) -> list[str]:
    """At most ``MAX_IDS`` ids: the first (the thread's root) and the last ones (the nearest parents).

    Every id becomes a thread key, so a header naming thousands would cost a
    row each; no mail client writes so many.
    """
    if len(ids) <= MAX_IDS:
        return ids
    defects.append(f"{name} names {len(ids)} Message-IDs; kept the first and the last {MAX_IDS - 1}")
    return [ids[0], *ids[-(MAX_IDS - 1):]]


_TRACE_FIELDS = frozenset({
    b"received", b"x-received", b"return-path", b"delivered-to", b"x-original-to", b"envelope-to",
    b"x-envelope-from", b"x-envelope-to", b"x-rcpt-to", b"received-spf", b"authentication-results",
    b"dkim-signature", b"x-google-dkim-signature", b"domainkey-signature", b"x-original-authentication-results",
    b"x-virus-scanned", b"x-gm-message-state", b"x-google-smtp-source", b"x-mailscanner",
})  # fmt: skip
_TRACE_PREFIXES = (b"arc-", b"x-spam", b"x-ms-exchange-", b"x-forefront-", b"x-microsoft-antispam", b"x-proofpoint-")
_FIELD = re.compile(rb"[^\n]*\n(?:[ \t][^\n]*\n)*")
"""One header field with its continuation lines."""


def _synthetic_id(data: bytes) -> str:
    """An id made of the content alone: the headers relays add on the way are left out, so
    a redelivery, with one more Received line, gets the same id and is known as a duplicate."""
    end = data.find(b"\n\n")
    head, body = (data[:end + 1], data[end + 1:]) if end >= 0 else (data + b"\n", b"")
    digest = hashlib.sha256()
    for index, field_bytes in enumerate(_FIELD.findall(head)):
        name = field_bytes.split(b":", 1)[0].strip().lower()
        mbox_from = index == 0 and field_bytes.startswith((b"From ", b">From "))
        if not (mbox_from or name in _TRACE_FIELDS or name.startswith(_TRACE_PREFIXES)):
            digest.update(field_bytes)
    digest.update(body)
    return f"<{digest.hexdigest()[:32]}@{SYNTHETIC_ID_DOMAIN}>"


# --- body ------------------------------------------------------------------


@dataclass
class _Body:
    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    parts: list[Part] = field(default_factory=list)
    texts: list[email.message.Message] = field(default_factory=list)
    """The parts decoded into ``plain`` and ``html``."""


def _walk(part: email.message.Message, body: _Body, depth: int, defects: list[str]) -> None:
    ctype = charsets.storable(part.get_content_type())
    for defect in getattr(part, "defects", []):
        defects.append(f"MIME structure ({ctype}): {type(defect).__name__}")
    if depth > MAX_DEPTH:
        defects.append("MIME nesting too deep; deeper parts ignored")
        return
    if ctype.startswith("message/"):
        body.parts.append(Part(part, forwarded_name(part) if ctype == "message/rfc822" else None))
    elif part.is_multipart() and isinstance(part.get_payload(), list):
        _walk_multipart(part, ctype, body, depth, defects)
    elif (encoding := _encoding(part)) not in _KNOWN_ENCODINGS:
        defects.append(f"{ctype}: unknown Content-Transfer-Encoding {encoding!r}; "
                       "kept as an application/octet-stream attachment (RFC 2049)")
        body.parts.append(Part(part, None, "application/octet-stream"))
    elif _is_attachment(part, ctype):
        body.parts.append(Part(part))
    else:
        text = _part_text(part, defects)
        body.texts.append(part)
        (body.html if ctype == "text/html" else body.plain).append(text)


def _walk_multipart(part, ctype: str, body: _Body, depth: int, defects: list[str]) -> None:
    boundary = safe_call(part.get_boundary)
    if boundary and len(boundary) > _MAX_BOUNDARY:
        defects.append(f"{ctype}: boundary longer than {_MAX_BOUNDARY} characters ({len(boundary)})")
    children = [p for p in part.get_payload() if isinstance(p, email.message.Message)]
    if ctype != "multipart/alternative":
        for child in children:
            _walk(child, body, depth + 1, defects)
        return
    branches = []
    for child in children:
        branch = _Body()
        _walk(child, branch, depth + 1, defects)
        branches.append(branch)
        body.parts.extend(branch.parts)
        body.texts.extend(branch.texts)
    plain = next((b.plain for b in branches if any(t.strip() for t in b.plain)), [])
    html = next((b.html for b in reversed(branches) if b.html), [])
    body.plain.extend(plain)
    body.html.extend(html)


def _encoding(part: email.message.Message) -> str:
    value = safe_call(part.get, "content-transfer-encoding", "")
    return charsets.storable(" ".join(str(value).split()).strip("\"'").lower())


def _decoding_defects(body: _Body) -> list[str]:
    """Defects the stdlib finds only while it decodes a part (bad base64), after that decoding."""
    found = []
    for part in [*body.texts, *(p.message for p in body.parts)]:
        for defect in getattr(part, "defects", []):
            if isinstance(defect, _BASE64_DEFECTS):
                ctype = charsets.storable(part.get_content_type())
                found.append(f"{ctype}: invalid base64 ({type(defect).__name__}); decoded what could be")
    return found


def _attachment_defects(attachments: list[Attachment]) -> list[str]:
    return [
        f"attachment {a.safe_filename!r}: the file name has bidi control characters, which can disguise it"
        for a in attachments if _BIDI_CONTROL.search(a.filename)
    ]


def _is_attachment(part: email.message.Message, ctype: str) -> bool:
    disposition = part.get_content_disposition()
    if disposition == "attachment":
        return True
    if ctype not in ("text/plain", "text/html") and not ctype.startswith("multipart/"):
        return True
    return disposition != "inline" and bool(safe_call(part.get_filename))


def _part_text(part: email.message.Message, defects: list[str]) -> str:
    payload = safe_call(part.get_payload, decode=True)
    if not isinstance(payload, bytes):
        payload = str(part.get_payload() or "").encode("utf-8", "surrogateescape")
    label = safe_call(part.get_content_charset)
    text, defect = charsets.decode(payload, label)
    if defect:
        defects.append(f"body ({charsets.storable(part.get_content_type())}): {defect}")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _clean_text(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    lines = [line.rstrip() for line in text.split("\n")]
    return quotes.collapse_blank_lines("\n".join(lines)).strip("\n")

