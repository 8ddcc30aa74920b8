"""MIME parts -> Attachment values: file names, safe names, decoded content.

A part's file name comes from Content-Disposition ``filename`` or
Content-Type ``name`` (RFC 2231 and encoded words decoded); safe_filename()
turns it into one that is safe to write to disk, and name_attachments()
keeps the safe names unique within a message. A part sent without a name
keeps ``filename`` empty and gets a safe name from its type; forwarded
messages are named after their subject, with ``.eml``.
"""

from __future__ import annotations

import email.message
import email.policy
import email.utils
import hashlib
import io
import mimetypes
import re
import unicodedata
from dataclasses import dataclass, field
from email.generator import BytesGenerator
from typing import NamedTuple

from maildesk.mail import charsets

__all__ = [
    "Attachment",
    "Part",
    "as_bytes",
    "forwarded_name",
    "message_bytes",
    "name_attachments",
    "safe_call",
    "safe_filename",
]


@dataclass(frozen=True)
class Attachment:
    """A file carried by a message, with its decoded bytes."""

    filename: str
    safe_filename: str
    content_type: str
    content: bytes = field(repr=False)
    content_id: str | None
    inline: bool

    @property
    def size(self) -> int:
        return len(self.content)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


class Part(NamedTuple):
    """A MIME part to attach, with the name and type to give it instead of its own."""

    message: email.message.Message
    name: str | None = None
    content_type: str | None = None


def forwarded_name(part: email.message.Message) -> str:
    """File name for a forwarded message/rfc822 part: its subject + ``.eml``."""
    payload = part.get_payload()
    inner = payload[0] if isinstance(payload, list) and payload else None
    subject = ""
    if isinstance(inner, email.message.Message):
        raw = next((v for n, v in inner.raw_items() if n.lower() == "subject"), "")
        subject = " ".join(charsets.header_text(raw)[0].split())
    name = re.sub(r"[\\/]+", "-", subject) or "forwarded-message"
    return f"{name}.eml"


def message_bytes(message: email.message.Message) -> bytes:
    """Serialise a stdlib message back to bytes, as the parser kept it."""
    out = io.BytesIO()
    BytesGenerator(out, mangle_from_=False, policy=email.policy.compat32).flatten(message)
    return out.getvalue()


def name_attachments(parts: list[Part]) -> list[Attachment]:
    """Attachments for ``parts``, safe names unique per message."""
    result: list[Attachment] = []
    used: set[str] = set()
    for part, forced_name, forced_type in parts:
        ctype = forced_type or charsets.storable(part.get_content_type())
        if ctype.startswith("message/"):
            payload = part.get_payload()
            inner = payload if isinstance(payload, list) else [payload]
            content = b"\n".join(
                message_bytes(m) if isinstance(m, email.message.Message) else as_bytes(m)
                for m in inner
            )
        else:
            content = safe_call(part.get_payload, decode=True)
            if not isinstance(content, bytes):
                content = as_bytes(str(part.get_payload() or ""))
        filename = _filename(part)
        safe = safe_filename(filename or forced_name or "", ctype)
        stem, dot, ext = safe.rpartition(".")
        base, ext = (stem, f".{ext}") if dot and stem else (safe, "")
        number, unique = 1, safe
        while unique.casefold() in used:
            number += 1
            unique = f"{base}-{number}{ext}"
        used.add(unique.casefold())
        safe = unique
        cid = safe_call(part.get, "Content-ID")
        cid = charsets.storable("".join(str(cid).split()).strip("<>")) or None if cid else None
        disposition = safe_call(part.get_content_disposition)
        inline = disposition == "inline" or (disposition is None and cid is not None)
        result.append(Attachment(filename, safe, ctype, content, cid, inline))
    return result


def _filename(part: email.message.Message) -> str:
    for param, header in (("filename", "content-disposition"), ("name", "content-type")):
        value = safe_call(_header_param(part, header).get_param, param, None, header)
        if isinstance(value, tuple):
            label, _, text = value
            raw = text.encode("raw-unicode-escape") if isinstance(text, str) else b""
            value = charsets.decode_lenient(raw, label or "utf-8")
        if value:
            text, _ = charsets.header_text(email.utils.unquote(str(value)))
            return text.strip()
    return ""


def _header_param(part: email.message.Message, header: str) -> email.message.Message:
    """``part``, or a stand-in whose ``header`` has raw 8-bit bytes decoded."""
    raw = next((str(v) for n, v in part.raw_items() if n.lower() == header), "")
    if raw.isascii():
        return part
    stand_in = email.message.Message()
    stand_in[header] = charsets.decode_lenient(raw.encode("utf-8", "surrogateescape"), None)
    return stand_in


_UNSAFE_CHARS = re.compile(r'[<>:"|?*]')
_RESERVED = re.compile(r"^(con|prn|aux|nul|com\d|lpt\d)(\.|$)", re.IGNORECASE)
_MAX_NAME = 150


def safe_filename(filename: str, content_type: str = "") -> str:
    """A file name that is safe to write anywhere; never empty.

    A part with no usable name gets one made from its type (``image.jpg``,
    ``document.pdf``, ``Delivery report.txt``).
    """
    name = unicodedata.normalize("NFC", filename or "")
    name = re.split(r"[/\\]", re.sub(r"\s", " ", name))[-1]
    name = "".join(c for c in name if unicodedata.category(c) not in ("Cc", "Cf", "Cs"))
    name = _UNSAFE_CHARS.sub("_", name)
    name = re.sub(r"\.{2,}", ".", " ".join(name.split()))
    bare_ext = _bare_extension(name)
    name = name.strip(" .")
    if _RESERVED.match(name):
        name = f"_{name}"
    if bare_ext or not name.strip("_"):
        stem, ext = _type_name(content_type)
        return stem + (bare_ext or ext)
    if len(name) > _MAX_NAME:
        stem, dot, ext = name.rpartition(".")
        if dot and stem and len(ext) <= 16:
            name = stem[: _MAX_NAME - len(ext) - 1].rstrip(" .") + "." + ext
        else:
            name = name[:_MAX_NAME]
    return name


def _bare_extension(name: str) -> str:
    """The extension when ``name`` is nothing but a known one (``.pdf``); else "".

    A dot file with an unknown suffix (``.hidden``) is a name, not an extension.
    """
    ext = name.rstrip(" .")
    if not ext.startswith(".") or "." in ext[1:] or not ext[1:].isalnum():
        return ""
    known = mimetypes.guess_type(f"x{ext}", strict=False)
    return ext if any(known) else ""


_REPORTS = {
    "message/delivery-status": "Delivery report",
    "message/global-delivery-status": "Delivery report",
    "message/disposition-notification": "Read receipt",
    "message/feedback-report": "Abuse report",
    "text/rfc822-headers": "Returned headers",
}
_STEMS = {"image": "image", "audio": "audio", "video": "video", "font": "font", "text": "document",
          "application": "document"}


def _type_name(content_type: str) -> tuple[str, str]:
    """A name and an extension for a part of ``content_type`` that came without a name."""
    if content_type in _REPORTS:
        return _REPORTS[content_type], ".txt"
    if content_type == "message/rfc822":
        return "message", ".eml"
    if content_type == "text/calendar":
        return "invitation", ".ics"
    extension = mimetypes.guess_extension(content_type or "") if content_type != "application/octet-stream" else None
    if extension is None:
        return "attachment", ".bin"
    return _STEMS.get(content_type.partition("/")[0], "attachment"), extension


# --- helpers parse.py shares -----------------------------------------------


def safe_call(func, *args, **kwargs):
    """``func(*args, **kwargs)``, or None if it raises."""
    try:
        return func(*args, **kwargs)
    except Exception:
        return None


def as_bytes(raw: object) -> bytes:
    """``raw`` as bytes (str via surrogateescape); b"" if it cannot be."""
    if isinstance(raw, bytes):
        return raw
    if isinstance(raw, str):
        return raw.encode("utf-8", "surrogateescape")
    try:
        return bytes(raw)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return b""
