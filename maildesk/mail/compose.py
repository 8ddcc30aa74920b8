"""Build the mail maildesk sends: headers that thread, loop guards, text and HTML.

Pure: values in, an ``EmailMessage`` out, no database and no network. Every
header value that may come from a customer (their subject, their name) goes
through ``clean()`` first, so a CR/LF in it can never start a header of its
own; the email package then folds long values and encodes non-ASCII ones.

Threading: ``In-Reply-To`` names the customer's message, ``References`` its
references plus its own id (RFC 5322 §3.6.4), and Outlook gets
``Thread-Topic`` and ``Thread-Index`` (a child of the customer's Thread-Index
when they sent one, else a root derived from the conversation's first id, so
every mail of one ticket lands in one Outlook conversation).
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.headerregistry import Address, HeaderRegistry
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid



class _HeaderClasses(HeaderRegistry):
    """The stdlib's header registry, building each header class once.

    ``HeaderRegistry`` creates a new class with ``type()`` for every header
    it parses (twice per header: when it is set and when it is written);
    the classes are the same every time, so keep them.
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


# 7bit: any relay takes it, with or without 8BITMIME.
POLICY = SMTP.clone(cte_type="7bit", header_factory=_HeaderClasses())
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
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
        except (ValueError, LookupError, UnicodeError):
            decoded = _ENCODED_WORD.sub(" ", text)
        text = " ".join(_CONTROL.sub(" ", decoded).split())
    return " ".join(_ENCODED_WORD.sub(" ", text).split())


def new_message_id(domain: str) -> str:
    """A fresh Message-ID under our own domain, so replies and bounces find their way back."""
    return make_msgid(domain=domain)


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


def address(name: str, addr: str) -> Address:
    """A header address; a name with CR/LF or quotes stays one quoted display name."""
    local, at, domain = clean(addr).rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"cannot send mail to {addr!r}: not an address")
    try:
        return Address(display_name=clean(name), username=local, domain=domain)
    except (ValueError, IndexError) as exc:
        raise ValueError(f"cannot send mail to {addr!r}: {exc}") from None


def compose(out: Outgoing) -> EmailMessage:
    if not out.to:
        raise ValueError("a mail needs at least one recipient")
    mail = EmailMessage(policy=POLICY)
    mail["From"] = address(out.from_name, out.from_address)
    mail["To"] = [address(name, addr) for name, addr in out.to]
    mail["Subject"] = clean(out.subject)
    mail["Date"] = format_datetime(out.date)
    mail["Message-ID"] = out.message_id
    if out.in_reply_to:
        mail["In-Reply-To"] = clean(out.in_reply_to)
    if out.references:
        mail["References"] = " ".join(clean(r) for r in out.references)
    mail["Thread-Topic"] = thread_topic(out.topic or out.subject)
    root = out.references[0] if out.references else out.message_id
    mail["Thread-Index"] = thread_index(out.parent_thread_index, root, out.date)
    if out.auto_submitted:
        mail["Auto-Submitted"] = out.auto_submitted
    if out.bulk:
        mail["Precedence"] = "bulk"
    if out.loop:
        mail["X-Loop"] = clean(out.loop)
    mail["X-Auto-Response-Suppress"] = "All"
    mail.set_content(out.text)
    if out.html is not None:
        mail.add_alternative(out.html, subtype="html")
    return mail
