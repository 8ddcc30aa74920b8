"""Build the mail maildesk sends: headers that thread, loop guards, text and HTML.

Pure: values in, an ``EmailMessage`` or its bytes out, no database and no
network. Every header value that may come from a customer (their subject,
their name) goes through ``clean()`` first, so a CR/LF in it can never start
a header of its own.

Every new ticket gets an acknowledgement, so this runs once per mail ingested.
The stdlib's header registry would parse each header when it is set and again
when it is written (most of a millisecond per mail); instead each value is
encoded here once, non-ASCII text as RFC 2047 encoded words, folded to 78
columns, stored with ``set_raw`` and written as it is. The bodies are encoded
as ``EmailMessage.set_content`` chooses: 7bit when they are ASCII with short
lines, else quoted-printable (in lines of 76, as RFC 2045 wants; the email
package allows 78) or, when that is longer, base64.
Writing the mail is then only joining, so ``compose_bytes()`` writes the
bytes directly, without message objects: the email package's generator cost
more than all the rest of an acknowledgement put together. A test holds them
equal to ``compose(out).as_bytes()``, the email package's rendering.

Threading: ``In-Reply-To`` names the customer's message, ``References`` its
references plus its own id (RFC 5322 §3.6.4), and Outlook gets
``Thread-Topic`` and ``Thread-Index`` (a child of the customer's Thread-Index
when they sent one, else a root derived from the conversation's first id, so
every mail of one ticket lands in one Outlook conversation).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import quoprimime
from email.errors import MessageError
from email.header import decode_header, make_header
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime
from functools import lru_cache
from itertools import accumulate
from urllib.parse import quote

from maildesk.mail import addresses, charsets


class _HeaderClasses(HeaderRegistry):
    """The stdlib's header registry, building each header class once.

    ``HeaderRegistry`` creates a new class with ``type()`` for every header
    it parses; the classes are the same every time, so keep them.
    """

    def __init__(self) -> None:
        super().__init__()
        self._built: dict[str, type] = {}

    def __getitem__(self, name: str) -> type:
        key = name.lower()
        built = self._built.get(key)
        if built is None:
            built = self._built[key] = super().__getitem__(key)
        return built


class _PreparedPolicy(EmailPolicy):
    """SMTP's policy for headers compose() has already encoded and folded.

    ``refold_source="none"`` writes them as they are. The generator looks up
    each part's Content-Type and Content-Transfer-Encoding several times, and
    parsing those is most of its cost; their values repeat from mail to mail
    and header objects are immutable, so parsed ones are kept.
    """

    def header_fetch_parse(self, name: str, value: str) -> BaseHeader:
        if hasattr(value, "name"):
            return value  # type: ignore[return-value]
        # Keyed by the factory: the generator swaps in a clone of the policy for each part.
        return _parsed_header(self.header_factory, name, value)


@lru_cache(maxsize=128)
def _parsed_header(header_factory: HeaderRegistry, name: str, value: str) -> BaseHeader:
    return header_factory(name, value.replace("\r", "").replace("\n", ""))


# 7bit: any relay takes it, with or without 8BITMIME.
POLICY = _PreparedPolicy(linesep="\r\n", cte_type="7bit", refold_source="none", header_factory=_HeaderClasses())
_MAX_LINE = POLICY.max_line_length  # 78, RFC 5322 §2.1.1, for headers and bodies alike
_QP_LINE = 76  # RFC 2045 §6.7
_ENCODED_WORD_LONGEST = 75  # RFC 2047 §2
_ENCODED_WORD_FRAME = len("=?utf-8?q??=")
_Q_CHAR_LONGEST = len("=F0=9F=98=80")  # a character of four UTF-8 bytes
# RFC 2047 §5(3): the only characters a Q-encoded word in a display name may
# carry as they are; the same set is safe in any other header.
_Q_PLAIN = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_Q_BYTE = [chr(b) if b in _Q_PLAIN else "_" if b == 0x20 else f"={b:02X}" for b in range(256)]
_SPECIALS = frozenset('()<>@,:;.\\"[]')
"""RFC 5322 §3.2.3: a display name with one of these is written as a quoted string."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
_CRLF = "\r\n"
_CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # what the generator writes as CRLF in a body
MAX_REFERENCES = 20
# FILETIME counts 100 ns ticks since 1601-01-01.
_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)


def clean(value: str) -> str:
    """One line of text safe for a header: control characters (CR, LF, NUL...) become spaces.

    Encoded words (``=?utf-8?q?=0D=0A...?=``) are decoded and cleaned as well:
    the email package would decode them itself when the header is set, and
    write the CR/LF inside as a real line break (Python 3.11).
    """
    text = " ".join(_CONTROL.sub(" ", value).split())
    for _ in range(5):
        if not _ENCODED_WORD.search(text):
            return text
        try:
            decoded = str(make_header(decode_header(text)))
        except (ValueError, LookupError, UnicodeError, MessageError):  # a broken word: drop it
            decoded = _ENCODED_WORD.sub(" ", text)
        text = " ".join(_CONTROL.sub(" ", decoded).split())
    return " ".join(_ENCODED_WORD.sub(" ", text).split())


MESSAGE_ID_BYTES = 24
"""Random bytes in our Message-IDs (192 bits): a reply proves it saw our mail only if no one can guess one."""


def new_message_id(domain: str) -> str:
    """A fresh, unguessable Message-ID under our own domain, so replies and bounces find their way back.

    Not ``email.utils.make_msgid``: its 64 bits come from a non-cryptographic
    generator next to the time and the process id.
    """
    return f"<{secrets.token_urlsafe(MESSAGE_ID_BYTES)}@{domain}>"


def references_for(parent_message_id: str | None, parent_references: list[str]) -> list[str]:
    """The References of a reply: the parent's references and the parent itself.

    A long chain keeps its first id (the conversation's root) and the newest ones.
    """
    chain = list(dict.fromkeys([*parent_references, *([parent_message_id] if parent_message_id else [])]))
    if len(chain) > MAX_REFERENCES:
        chain = [chain[0], *chain[-(MAX_REFERENCES - 1):]]
    return chain


def thread_topic(subject: str) -> str:
    """Outlook's Thread-Topic: the subject without reply/forward prefixes."""
    return clean(re.sub(r"^\s*(?:(?:re|aw|sv|fwd?|wg|tr)\s*:\s*)+", "", subject, flags=re.IGNORECASE))


def thread_index(parent: str | None, root_id: str, now: datetime) -> str:
    """Outlook's Thread-Index: a 5-byte child of ``parent``, or a new 22-byte root.

    A root is 6 bytes of the FILETIME and a 16-byte GUID; here the GUID is a
    hash of the conversation's root Message-ID, so it is the same for every
    mail of one ticket. A child appends the time since the root, in the
    31-bit unit Outlook uses (2**18 ticks).
    """
    ticks = int((now - _FILETIME_EPOCH).total_seconds() * 10_000_000)
    parsed = _decode_index(parent)
    if parsed is None:
        guid = hashlib.md5(root_id.encode("utf-8", "replace"), usedforsecurity=False).digest()
        return base64.b64encode(ticks.to_bytes(8, "big")[:6] + guid).decode("ascii")
    root_ticks = int.from_bytes(parsed[:6] + b"\0\0", "big")
    delta = max(0, ticks - root_ticks) >> 18
    child = (delta & 0x7FFFFFFF).to_bytes(4, "big") + bytes([ticks & 0xFF])
    return base64.b64encode(parsed + child).decode("ascii")


def _decode_index(value: str | None) -> bytes | None:
    if not value:
        return None
    try:
        data = base64.b64decode("".join(value.split()), validate=True)
    except ValueError:
        return None
    return data if len(data) >= 22 and (len(data) - 22) % 5 == 0 else None


@dataclass(frozen=True)
class Outgoing:
    """Everything one outgoing mail is made of."""

    from_address: str
    from_name: str
    to: list[tuple[str, str]]
    """(name, address) pairs."""
    subject: str
    text: str
    html: str | None
    message_id: str
    date: datetime
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    auto_submitted: str | None = None
    """"auto-replied" (acknowledgements), "auto-generated" (notifications), None (a person wrote it)."""
    bulk: bool = False
    """Adds ``Precedence: bulk``, which old vacation programs still respect."""
    loop: str = ""
    """The X-Loop value: our support address."""
    parent_thread_index: str | None = None
    topic: str = ""
    """Outlook's Thread-Topic: the conversation's subject (default: this subject without Re:)."""
    cc: list[tuple[str, str]] = field(default_factory=list)
    reply_to: list[tuple[str, str]] = field(default_factory=list)
    """Where replies go instead of From (a notification: the agent reply address)."""
    attachments: list[OutgoingAttachment] = field(default_factory=list)
    """Files sent with the mail (an agent's answer carries the agent's)."""


@dataclass(frozen=True)
class OutgoingAttachment:
    filename: str
    content_type: str
    content: bytes


def address(name: str, addr: str) -> Address:
    """A header address; a name with CR/LF or quotes stays one quoted display name.

    A quoted local part (``"john smith"@x``) keeps its quotes and its spaces, so
    the relay delivers to the very mailbox that wrote to us.
    """
    quoted = addresses.split_addr_spec(_CONTROL.sub(" ", addr).strip())
    local, at, domain = (quoted[0], "@", quoted[1]) if quoted else clean(addr).rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"cannot send mail to {addr!r}: not an address")
    try:
        return Address(display_name=clean(name), username=local, domain=domain)
    except (ValueError, IndexError) as exc:
        raise ValueError(f"cannot send mail to {addr!r}: {exc}") from None


def compose(out: Outgoing) -> EmailMessage:
    """The mail ``out`` describes; ValueError when it has no recipient or one is not an address."""
    return _message(_layout(out))


def compose_bytes(out: Outgoing) -> bytes:
    """``compose(out).as_bytes()``, written without the email package; the same ValueErrors."""
    return _wire(_layout(out)).encode("ascii", "surrogateescape")


_Header = tuple[str, str]
"""A header's name and its value, encoded and folded: ready to be written as it is."""


@dataclass(frozen=True, slots=True)
class _Text:
    """A text part, or a mail that is only one: its headers and its encoded payload.

    The payload has "\n" line breaks, as the email package keeps them.
    """

    headers: list[_Header]
    payload: str


@dataclass(frozen=True, slots=True)
class _Multipart:
    """A multipart entity (alternative, or mixed with attachments): its headers and its parts,
    separated by ``boundary``."""

    headers: list[_Header]
    parts: list[_Text | _Multipart]
    boundary: str


def _layout(out: Outgoing) -> _Text | _Multipart:
    """What compose() and compose_bytes() both write, so that they cannot drift apart."""
    if not out.to:
        raise ValueError("a mail needs at least one recipient")
    headers = _headers(out)
    body = _body(out)
    if out.attachments:
        parts = [body, *(_attachment_part(attachment) for attachment in out.attachments)]
        boundary = _boundary(_payloads(parts))
        headers.append(("Content-Type", f'multipart/mixed;\r\n boundary="{boundary}"'))
        return _Multipart(headers, parts, boundary)
    if isinstance(body, _Text):
        return _Text([*headers, *body.headers], body.payload)
    return _Multipart([*headers, *body.headers], body.parts, body.boundary)


def _body(out: Outgoing) -> _Text | _Multipart:
    """The text (and HTML) of the mail, with only its own Content-* headers."""
    if out.html is None:
        return _text_part("plain", out.text)
    parts: list[_Text | _Multipart] = [_text_part("plain", out.text), _text_part("html", out.html)]
    boundary = _boundary(_payloads(parts))
    return _Multipart([("Content-Type", f'multipart/alternative;\r\n boundary="{boundary}"')], parts, boundary)


def _payloads(parts: list[_Text | _Multipart]) -> list[str]:
    return [p.payload for p in parts if isinstance(p, _Text)] + [
        payload for p in parts if isinstance(p, _Multipart) for payload in _payloads(p.parts)]


def _attachment_part(attachment: OutgoingAttachment) -> _Text:
    """A file, base64 in lines of 76; its name as a quoted string, or RFC 2231 when it is not plain ASCII."""
    name = clean(attachment.filename) or "attachment"
    if name.isascii() and '"' not in name and "\\" not in name:
        parameter = f'filename="{name}"'
    else:
        parameter = "filename*=utf-8''" + quote(name, safe="")
    content_type = attachment.content_type if _CONTENT_TYPE.fullmatch(attachment.content_type) else (
        "application/octet-stream")
    headers: list[_Header] = [
        ("Content-Type", content_type), ("Content-Transfer-Encoding", "base64"),
        ("Content-Disposition", f"attachment;\r\n {parameter}")]
    return _Text(headers, base64.encodebytes(attachment.content).decode("ascii"))


def _headers(out: Outgoing) -> list[_Header]:
    """The mail's headers up to MIME-Version, in order, values ready to write."""
    headers = [
        ("From", _addresses("From", [address(out.from_name, out.from_address)])),
        ("To", _addresses("To", [address(name, addr) for name, addr in out.to])),
        *([("Cc", _addresses("Cc", [address(name, addr) for name, addr in out.cc]))] if out.cc else []),
        *([("Reply-To", _addresses("Reply-To", [address(name, addr) for name, addr in out.reply_to]))]
          if out.reply_to else []),
        ("Subject", _text("Subject", clean(out.subject))),
        ("Date", format_datetime(out.date)),
        ("Message-ID", _text("Message-ID", clean(out.message_id), identifiers=True)),
    ]
    if out.in_reply_to:
        headers.append(("In-Reply-To", _text("In-Reply-To", clean(out.in_reply_to), identifiers=True)))
    if out.references:
        references = " ".join(clean(r) for r in out.references)
        headers.append(("References", _text("References", references, identifiers=True)))
    headers.append(("Thread-Topic", _text("Thread-Topic", thread_topic(out.topic or out.subject))))
    root = out.references[0] if out.references else out.message_id
    headers.append(("Thread-Index", thread_index(out.parent_thread_index, root, out.date)))
    if out.auto_submitted:
        headers.append(("Auto-Submitted", _text("Auto-Submitted", clean(out.auto_submitted), identifiers=True)))
    if out.bulk:
        headers.append(("Precedence", "bulk"))
    if out.loop:
        headers.append(("X-Loop", _text("X-Loop", clean(out.loop))))
    headers.append(("X-Auto-Response-Suppress", "All"))
    headers.append(("MIME-Version", "1.0"))
    return headers


def _message(entity: _Text | _Multipart) -> EmailMessage:
    """The entity as an ``EmailMessage``, whose generator writes the headers as they are."""
    mail = EmailMessage(policy=POLICY)
    for name, value in entity.headers:
        mail.set_raw(name, value)
    if isinstance(entity, _Text):
        mail.set_payload(entity.payload)
    else:
        mail.set_payload([_message(part) for part in entity.parts])
    return mail


def _wire(entity: _Text | _Multipart) -> str:
    """The entity as the email package's generator writes it under ``POLICY``.

    Each header is "Name: value" and CRLF, then an empty line. A text body
    only has its line breaks made CRLF: none is added at its end. A
    multipart body has no preamble and no epilogue: each part follows a line
    "--boundary", the CRLF before such a line belongs to it (RFC 2046
    §5.1.1), and after the last part come "--boundary--" and CRLF.
    """
    # As the policy writes a value it leaves as it is (it would refold one
    # with surrogates, but _folded_by_email_package has taken those out).
    head = "".join(f"{name}: {_CRLF.join(value.splitlines())}\r\n" for name, value in entity.headers)
    if isinstance(entity, _Text):
        return f"{head}\r\n{_LINE_BREAK.sub(_CRLF, entity.payload)}"
    dashes = "--" + entity.boundary
    parts = f"\r\n{dashes}\r\n".join(_wire(part) for part in entity.parts)
    return f"{head}\r\n{dashes}\r\n{parts}\r\n{dashes}--\r\n"


def _text_part(subtype: str, text: str) -> _Text:
    """A text/plain or text/html body in UTF-8, encoded as ``set_content`` would choose.

    7bit when ASCII with no line over 78 characters, else quoted-printable,
    or base64 when that is shorter for the first ten lines. Base64 carries
    the text with CRLF line breaks, quoted-printable with the generator's.
    """
    lines = text.encode("utf-8").splitlines()
    if text.isascii() and max(map(len, lines), default=0) <= _MAX_LINE:
        encoding, payload = "7bit", "\n".join(line.decode("ascii") for line in lines) + "\n"
    else:
        head = b"\n".join(lines[:10]) + b"\n"
        payload = _quoted_printable(head)
        if len(payload) > _base64_size(len(head) + min(len(lines), 10)) + 1:
            encoding = "base64"
            payload = base64.encodebytes(b"\r\n".join(lines) + b"\r\n").decode("ascii")
        else:
            encoding = "quoted-printable"
            if len(lines) > 10:
                payload = _quoted_printable(b"\n".join(lines) + b"\n")
    headers: list[_Header] = [
        ("Content-Type", f'text/{subtype}; charset="utf-8"'), ("Content-Transfer-Encoding", encoding)]
    return _Text(headers, payload)


def _quoted_printable(data: bytes) -> str:
    """``data`` (lines ending in "\n") quoted-printable, in lines of at most 76 characters (RFC 2045 §6.7).

    binascii's encoder is several times faster than the email package's, but
    a blank at the end of a long line, which it writes as "=20", can take the
    line to 78 characters; that rare text goes through the email package's
    encoder (``set_content`` itself would allow 78 everywhere).
    """
    encoded = binascii.b2a_qp(data, istext=True).decode("ascii")
    if max(map(len, encoded.split("\n"))) <= _QP_LINE:
        return encoded
    return quoprimime.body_encode(data.decode("latin-1"), _QP_LINE)


def _boundary(bodies: list[str]) -> str:
    """A multipart boundary no body contains (quoted-printable and base64 never have "=_")."""
    while True:
        boundary = "=_" + secrets.token_hex(16)
        if not any(boundary in body for body in bodies):
            return boundary


def _text(name: str, text: str, *, identifiers: bool = False) -> str:
    """An unstructured header value (RFC 5322 §3.2.5), folded.

    ASCII words stay as they are; runs of words with anything else in them
    become encoded words (RFC 2047), whose text also holds the spaces between
    them. So do words too long for a line, except ``identifiers`` (message
    ids, keywords): other programs compare those byte for byte, so they stay
    whole (RFC 5322 allows lines of 998 characters).
    """
    if charsets.has_surrogates(text):
        return _folded_by_email_package(name, text)
    lines = _Lines(name)
    longest = _MAX_LINE - len(name) - 2
    run: list[str] = []
    for word in text.split():
        if word.isascii() and (identifiers or ("=?" not in word and len(word) <= longest)):
            if run:
                lines.add_encoded(" ".join(run))
                run = []
            lines.add(word)
        else:
            run.append(word)
    if run:
        lines.add_encoded(" ".join(run))
    return lines.value()


def _addresses(name: str, addresses: list[Address]) -> str:
    """An address list: display names quoted or encoded as needed, folded between words."""
    if any(not addr.addr_spec.isascii() or charsets.has_surrogates(addr.display_name) for addr in addresses):
        return _folded_by_email_package(name, addresses)
    lines = _Lines(name)
    for number, addr in enumerate(addresses, 1):
        comma = "," if number < len(addresses) else ""
        display = addr.display_name
        if not display:
            lines.add(addr.addr_spec + comma)
            continue
        if not display.isascii() or "=?" in display:
            lines.add_encoded(display)
        elif _SPECIALS.isdisjoint(display):
            for word in display.split():
                lines.add(word)
        else:
            for word in ('"' + display.replace("\\", "\\\\").replace('"', '\\"') + '"').split(" "):
                lines.add(word)
        lines.add(f"<{addr.addr_spec}>{comma}")
    return lines.value()


def _folded_by_email_package(name: str, value: str | list[Address]) -> str:
    """The header as the email package folds it, for what has no plain UTF-8 7bit form.

    That is an address with a non-ASCII local part or domain (it would take
    SMTPUTF8) and text with undecodable bytes kept as surrogate escapes
    (written as "unknown-8bit" encoded words). ValueError when the email
    package cannot: its header parser raises other errors too on odd
    addresses (AttributeError on ``a@[é``, Python 3.11).
    """
    try:
        folded = POLICY.header_factory(name, value).fold(policy=POLICY)
    except Exception as exc:  # noqa: BLE001 - see above: a bug of the library, not of the caller
        raise ValueError(f"the {name} header could not be written ({type(exc).__name__} in the email package)") \
            from exc
    return folded.partition(":")[2].strip()


class _Lines:
    """One header value laid out in lines of at most 78 characters, the first after "Name: ".

    Words are separated by one space, and where the next word would not fit
    the space becomes a line break (folding, RFC 5322 §2.2.3).
    """

    def __init__(self, name: str) -> None:
        self._done: list[str] = []
        self._words: list[str] = []
        self._width = len(name) + 1

    def room(self) -> int:
        """How long a word may be and still fit on this line after its space."""
        return _MAX_LINE - self._width - 1

    def add(self, word: str) -> None:
        if self._words and len(word) > self.room():
            self._break()
        self._words.append(word)
        self._width += 1 + len(word)

    def add_encoded(self, text: str) -> None:
        """``text`` as UTF-8 encoded words (RFC 2047).

        Q encoding unless base64 is shorter. A run that fits one encoded word
        stays whole; a longer one fills the line and breaks after a space
        where it can. Decoders drop the whitespace between two encoded words,
        so the spaces of ``text`` go inside them.
        """
        data = text.encode("utf-8")
        use_base64 = sum(len(_Q_BYTE[byte]) for byte in data) > _base64_size(len(data))
        measures = [len(char.encode("utf-8")) if use_base64 else _q_size(char) for char in text]
        sums = list(accumulate(measures, initial=0))

        def size(begin: int, end: int) -> int:
            measure = sums[end] - sums[begin]
            return _base64_size(measure) if use_base64 else measure

        begin = 0
        while begin < len(text):
            room = self._encoded_room(size(begin, len(text)))
            end = begin + 1
            while end < len(text) and size(begin, end + 1) <= room:
                end += 1
            if end < len(text) and text.rfind(" ", begin, end) > begin:
                end = text.rfind(" ", begin, end) + 1
            self.add(_encoded_word(text[begin:end], use_base64))
            begin = end

    def value(self) -> str:
        return "\r\n ".join([*self._done, " ".join(self._words)])

    def _encoded_room(self, wanted: int) -> int:
        """How much encoded text the next encoded word may hold.

        It starts a new line when this one is nearly full, or when the
        ``wanted`` rest would fit whole there but not here.
        """
        room = min(self.room(), _ENCODED_WORD_LONGEST) - _ENCODED_WORD_FRAME
        if self._words and (room < _Q_CHAR_LONGEST or room < wanted <= _ENCODED_WORD_LONGEST - _ENCODED_WORD_FRAME):
            self._break()
            room = min(self.room(), _ENCODED_WORD_LONGEST) - _ENCODED_WORD_FRAME
        return room

    def _break(self) -> None:
        self._done.append(" ".join(self._words))
        self._words = []
        self._width = 0


def _q_size(char: str) -> int:
    return sum(len(_Q_BYTE[byte]) for byte in char.encode("utf-8"))


def _base64_size(length: int) -> int:
    return 4 * -(-length // 3)


def _encoded_word(text: str, use_base64: bool) -> str:
    data = text.encode("utf-8")
    if use_base64:
        return "=?utf-8?b?" + base64.b64encode(data).decode("ascii") + "?="
    return "=?utf-8?q?" + "".join(_Q_BYTE[byte] for byte in data) + "?="
