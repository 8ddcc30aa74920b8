"""A reproducible stream of hostile mail, for fuzzing ingestion.

Each mail is shaped like a real one (From, To, Subject, Date, ids, MIME
parts) but every value may be junk: control characters, NUL, lone
surrogates, mislabelled or invented charsets, broken encoded words, ids
and lines far over any limit, dates at the edge of the calendar; senders
that are missing, several or quoted; NUL in headers, unknown transfer
encodings, overlong boundaries, bidi controls in file names, MIME nested
hundreds of levels deep, junk above the headers and headers that lost
their folding. Half of them are then mutated at random
byte positions. ``mails(seed, n)`` always
yields the same mails for the same seed.
"""

from __future__ import annotations

import base64
import quopri
import random
from collections.abc import Iterator

CHARSETS = [
    "utf-8", "us-ascii", "iso-8859-1", "windows-1252", "gb2312", "shift_jis", "euc-kr", "big5", "iso-2022-jp",
    "utf-7", "utf-16", "utf-16-be", "utf-32", "unicode_escape", "raw_unicode_escape", "punycode", "idna",
    "koi8-r", "x-unknown", "bogus", "136", "utf8*en", "hex", "base64", "rot13", "zlib", "mac-roman", "cp037",
    "iso-8859-8-i", "", "utf-8-sig", "unicode-1-1-utf-7", "latin1", "ascii",
]  # fmt: skip
ODD_CHARACTERS = [
    "\x00", "\x01", "\x1b", "\x7f", "\u0085", "\u2028", "\ufeff", "\ufffe", "\uffff", "\U0010ffff", "\U0001F600",
    "\u202e", "İ", "ß", "\ud800", "\udc80", "é", "中", "\t", "\r", "\n",
]  # fmt: skip
ODD_BYTES = [
    b"\x1b$B-!-\"\x1b(B", b"\x00", b"\xff", b"\xfe", b"\x80", b"\xc3", b"\xed\xa0\x80", b"\xe4\xb8\xad", b"\x1b$B", b"\r", b"\n ",
    b"\x0b", b"\x0c", b"=?", b"?=", b"<", b">", b'"', b"\\", b";", b",", b"@", b":", b"(", b")",
]  # fmt: skip
DATES = [
    b"Mon, 2 Nov 2026 09:30:00 +0000", b"0001-01-01T00:00:00+01:00", b"9999-12-31T23:59:59-01:00",
    b"Fri, 31 Dec 9999 23:00:00 -2359", b"Mon, 1 Jan 0001 00:00:00 +2359", b"Mon, 2 Nov 2026 09:30:00 +9999",
    b"Mon, 2 Nov 2026 09:30:00 -9959", b"2026-11-02 09:30:00", b"31.12.9999 23:59:59", b"01.01.0001 00:00",
    b"Mon, 2 Nov 99999 09:30:00 +0000", b"Mon, 2 Nov 2026 25:61:61 +0000", b"garbage", b"",
    b"0001-01-01T00:00:00-23:59", b"9999-12-31T23:59:59.999999+00:00", b"0001-01-01", b"9999-12-31T23:59:59+23:59",
    b"Mon, 2 Nov 26 09:30:00 GMT+05:30", b"Thu, 1 Jan 1970 00:00:00 -0000", b"1600-01-01T00:00:00Z",
    b"\xff\xfe", b"Mon, 2 Nov 2026 09:30:00 +0000\x00",
]  # fmt: skip


def mails(seed: int, count: int) -> Iterator[tuple[bytes, bool]]:
    """``count`` hostile mails, each with whether to acknowledge it (about one in three)."""
    rnd = random.Random(seed)
    for _ in range(count):
        mail = _mail(rnd)
        if rnd.random() < 0.03:
            mail = _deeply_nested(rnd, mail)
        if rnd.random() < 0.05:
            mail = _broken_head(rnd, mail)
        if rnd.random() < 0.5:
            mail = _mutated(rnd, mail)
        yield mail, rnd.random() < 0.3


def _text(rnd: random.Random, length: int) -> str:
    characters = []
    for _ in range(length):
        roll = rnd.random()
        if roll < 0.6:
            characters.append(chr(rnd.randrange(0x21, 0x7F)))
        elif roll < 0.8:
            characters.append(rnd.choice(ODD_CHARACTERS))
        else:
            characters.append(chr(rnd.choice([rnd.randrange(0x80, 0x800), rnd.randrange(0x4E00, 0x9FFF),
                                               rnd.randrange(0x10000, 0x10FFFF)])))
    return "".join(characters)


def _encoded_word(rnd: random.Random, text: str) -> bytes:
    charset = rnd.choice(CHARSETS)
    try:
        data = text.encode(charset if charset not in ("", "bogus", "136", "x-unknown", "utf8*en") else "utf-8",
                           "surrogatepass")
    except Exception:  # noqa: BLE001 - a codec that cannot encode this text, or cannot encode at all
        try:
            data = text.encode(charset, "replace")
        except Exception:  # noqa: BLE001
            data = text.encode("utf-8", "surrogatepass")
    if isinstance(data, str):  # the bytes-to-bytes codecs (hex, base64, zlib) take no str
        data = data.encode("utf-8", "surrogatepass")
    if rnd.random() < 0.3:
        data = rnd.randbytes(rnd.randrange(1, 20))
    if rnd.random() < 0.5:
        return b"=?" + charset.encode() + b"?B?" + base64.b64encode(data) + b"?="
    return b"=?" + charset.encode() + b"?Q?" + quopri.encodestring(data, header=True).replace(b"\n", b"") + b"?="


def _value(rnd: random.Random, usual_length: int = 60) -> bytes:
    """Header or body bytes: odd text, encoded words, or odd bytes; now and then very long."""
    length = (rnd.choice([1, 5, 20, usual_length, 300, 1000, 1100, 3000]) if rnd.random() < 0.3
              else rnd.randrange(1, usual_length))
    roll = rnd.random()
    if roll < 0.4:
        return _text(rnd, length).encode("utf-8", "surrogatepass")
    if roll < 0.7:
        return b" ".join(_encoded_word(rnd, _text(rnd, rnd.randrange(1, 30))) for _ in range(rnd.randrange(1, 4)))
    return b"".join(rnd.choice(ODD_BYTES) if rnd.random() < 0.3 else bytes([rnd.randrange(0x21, 0x7F)])
                    for _ in range(length))


def _address(rnd: random.Random) -> bytes:
    local = _value(rnd, 30) if rnd.random() < 0.4 else b"user%d" % rnd.randrange(1000)
    domain = _value(rnd, 20) if rnd.random() < 0.2 else b"customer.example"
    if rnd.random() < 0.05:
        local = b"a" * rnd.choice([310, 320, 330, 1000])
    address, name, roll = local + b"@" + domain, _value(rnd, 40), rnd.random()
    if roll < 0.3:
        return address
    if roll < 0.6:
        return b'"' + name + b'" <' + address + b">"
    if roll < 0.8:
        return name + b" <" + address + b">"
    return address + b" (" + name + b")"


def _message_id(rnd: random.Random) -> bytes:
    roll = rnd.random()
    if roll < 0.3:
        return b"<m%d@customer.example>" % rnd.randrange(10**9)
    if roll < 0.5:
        length = rnd.choice([990, 996, 997, 998, 999, 1000, 1500, 3000, 200])
        character = rnd.choice(["a", "中", "\U0001F600", "é", None])
        local = ("".join(chr(rnd.randrange(0x4E00, 0x9FFF)) for _ in range(length)) if character is None
                 else character * length)
        return b"<" + local.encode("utf-8") + b"@x>"
    return b"<" + _value(rnd, 50) + b"@" + _value(rnd, 10) + b">"


def _part(rnd: random.Random, depth: int = 0) -> bytes:
    """One MIME entity: headers, an empty line, the body."""
    roll = rnd.random()
    if depth < 3 and roll < 0.12:
        return b"Content-Type: message/rfc822\n\n" + _mail(rnd, depth + 1)
    if depth < 3 and roll < 0.2:
        boundary = b"B%d" % rnd.randrange(10**6)
        if rnd.random() < 0.2:
            boundary += b"-" * rnd.choice([64, 65, 200, 2000])
        parts = [_part(rnd, depth + 1) for _ in range(rnd.randrange(1, 4))]
        subtype = rnd.choice([b"mixed", b"alternative", b"related", b"report; report-type=delivery-status"])
        return (b"Content-Type: multipart/" + subtype + b"; boundary=" + boundary + b"\n\n"
                + b"".join(b"--" + boundary + b"\n" + part + b"\n" for part in parts) + b"--" + boundary + b"--\n")
    headers = []
    content_type = rnd.choice([b"text/plain", b"text/html", b"application/octet-stream", b"image/png",
                               b"message/delivery-status", b"text/rfc822-headers", None])
    if content_type is None:
        content_type = _value(rnd, 40) + b"/" + _value(rnd, rnd.choice([20, 300]))
    params = []
    if rnd.random() < 0.5:
        params.append(b"charset=" + rnd.choice(CHARSETS).encode())
    if rnd.random() < 0.4:
        params.append(b'name="' + _value(rnd, 40) + b'"')
    headers.append(b"Content-Type: " + content_type + b"".join(b"; " + p for p in params))
    if rnd.random() < 0.5:
        headers.append(b"Content-Disposition: " + _disposition(rnd))
    if rnd.random() < 0.3:
        headers.append(b"Content-ID: " + _message_id(rnd))
    if rnd.random() < 0.3:
        headers.append(b"Content-Transfer-Encoding: " + rnd.choice(
            [b"base64", b"quoted-printable", b"8bit", b"binary", b"x-uuencode", b"x-uuencode-weird", _value(rnd, 10)]))
    body = _value(rnd, 200)
    if rnd.random() < 0.2:
        body = b"<html><body>" + body + b"&#0;&#xD800;&#x110000;&#1;</body></html>"
    if rnd.random() < 0.1:  # what a bounce quotes of the mail it returns
        body = b"Message-ID: " + _message_id(rnd).replace(b"@x>", b"@desk.example.com>") + b"\nAction: failed\n"
    return b"\n".join(headers) + b"\n\n" + body


def _disposition(rnd: random.Random) -> bytes:
    disposition = rnd.choice([b"attachment", b"inline", _value(rnd, 10)])
    roll = rnd.random()
    if roll < 0.3:
        return disposition + b'; filename="' + _value(rnd, 60) + b'"'
    if roll < 0.35:  # a right-to-left override or other bidi control disguising the name
        control = rnd.choice(["\u202e", "\u202b", "\u2067", "\u200f", "\u061c"]).encode()
        return disposition + b"; filename*=utf-8''invoice" + b"".join(b"%%%02X" % c for c in control) + b"fdp.exe"
    if roll < 0.6:  # RFC 2231, any charset, any byte
        encoded = b"".join(b"%%%02X" % rnd.randrange(256) if rnd.random() < 0.5 else bytes([rnd.randrange(0x61, 0x7A)])
                           for _ in range(rnd.randrange(1, 40)))
        return disposition + b"; filename*=" + rnd.choice(CHARSETS).encode() + b"''" + encoded
    if roll < 0.75:  # RFC 2231 continuations splitting a character, with a NUL
        return disposition + b"; filename*0*=utf-8''%E4%B8; filename*1*=%AD%00; filename*2=\"" + _value(rnd, 10) + b'"'
    return disposition


def _mail(rnd: random.Random, depth: int = 0) -> bytes:
    headers = [
        *_sender(rnd),
        b"To: " + (b"support@example.com" if rnd.random() < 0.7 else _address(rnd) + b", support@example.com"),
    ]
    if rnd.random() < 0.05:
        headers.append(b"X-Junk: " + _value(rnd, 20) + b"\x00" + _value(rnd, 20))
    if rnd.random() < 0.3:
        headers.append(b"Cc: " + b", ".join(_address(rnd) for _ in range(rnd.randrange(1, 4))))
    if rnd.random() < 0.2:
        headers.append(b"Reply-To: " + _address(rnd))
    subject = _value(rnd, 80)
    if rnd.random() < 0.1:
        subject = b"Undeliverable: " + subject
    if rnd.random() < 0.1:
        subject = b"Automatic reply: " + subject
    headers += [b"Subject: " + subject, b"Date: " + rnd.choice(DATES), b"Message-ID: " + _message_id(rnd)]
    if rnd.random() < 0.3:
        headers.append(b"In-Reply-To: " + _message_id(rnd))
    if rnd.random() < 0.3:
        headers.append(b"References: " + b" ".join(_message_id(rnd) for _ in range(rnd.randrange(1, 5))))
    if rnd.random() < 0.2:
        headers.append(b"Thread-Index: " + rnd.choice(
            [_value(rnd, 300), base64.b64encode(rnd.randbytes(rnd.choice([22, 27, 200, 300])))]))
    for name in (b"Auto-Submitted", b"Precedence", b"List-Id", b"X-Loop", b"X-Failed-Recipients", b"X-Autoreply"):
        if rnd.random() < 0.05:
            headers.append(name + b": " + _value(rnd, 40))
    if rnd.random() < 0.1:
        headers.append(b"X-Long: " + b"x" * rnd.choice([1000, 10000, 100000]))
    headers += _trace_and_reply_tricks(rnd)
    if rnd.random() < 0.5:
        part_headers, _, body = _part(rnd, depth).partition(b"\n\n")
        return b"\n".join([*headers, b"MIME-Version: 1.0"]) + b"\n" + part_headers + b"\n\n" + body
    return b"\n".join(headers) + b"\n\n" + _value(rnd, 300) + b"\n"


def _trace_and_reply_tricks(rnd: random.Random) -> list[bytes]:
    """What an attacker or a broken relay adds: a tag no ticket can have, a null Return-Path,
    a relay loop, a Reply-To folded around a second address, a To list of thousands."""
    tricks = []
    if rnd.random() < 0.05:
        tricks.append(b"Subject: Re: [#" + rnd.choice([b"999999999999999999", b"2147483648", b"0", b"-1"]) + b"]")
    if rnd.random() < 0.05:
        tricks.append(b"Return-Path: " + rnd.choice([b"<>", b"", b"<<>>", b" <> "]))
    if rnd.random() < 0.03:
        tricks += [b"Received: from r%d by r%d; Mon, 2 Nov 2026 09:00:00 +0000" % (n, n + 1)
                   for n in range(rnd.choice([99, 100, 101, 150]))]
    if rnd.random() < 0.05:
        tricks.append(b"Reply-To: <eve@evil.example\n RCPT TO:<victim@x.example>>")
    if rnd.random() < 0.02:
        tricks.append(b"Cc: " + b",\n ".join(b"u%d@many.example" % n for n in range(rnd.choice([100, 101, 3000]))))
    return tricks


def _deeply_nested(rnd: random.Random, mail: bytes) -> bytes:
    """``mail``'s headers over its body wrapped in hundreds of multiparts or attached messages."""
    head, _, body = mail.partition(b"\n\n")
    head = b"\n".join(line for line in head.split(b"\n") if not line.lower().startswith(b"content-"))
    levels = rnd.choice([60, 300, 1000, 2000])
    if rnd.random() < 0.5:
        inner = b"".join(b"Content-Type: message/rfc822\n\nSubject: level %d\n" % i for i in range(levels))
        return head + b"\nMIME-Version: 1.0\n" + inner + b"\n" + body
    boundary = b"same" if rnd.random() < 0.2 else None
    opening = b"".join(b"Content-Type: multipart/mixed; boundary=%s\n\n--%s\n" % ((boundary or b"b%d" % i,) * 2)
                       for i in range(levels))
    closing = b"".join(b"\n--%s--\n" % (boundary or b"b%d" % i) for i in reversed(range(levels)))
    return head + b"\nMIME-Version: 1.0\n" + opening + b"Content-Type: text/plain\n\n" + body + closing


def _broken_head(rnd: random.Random, mail: bytes) -> bytes:
    """``mail`` with junk above its headers, or a header line that lost its folding blank."""
    if rnd.random() < 0.5:
        junk = rnd.choice([b"---- Original email message ----\n", b">From x@y.example Mon Nov  2 09:30:00 2026\n",
                           b"\n", _value(rnd, 40) + b"\n"])
        return junk * rnd.randrange(1, 4) + mail
    head, _, body = mail.partition(b"\n\n")
    lines = head.split(b"\n")
    lines.insert(rnd.randrange(1, len(lines) + 1), rnd.choice([b"of last Tuesday", b"<a2@x.example>", _value(rnd, 60)]))
    return b"\n".join(lines) + b"\n\n" + body


def _sender(rnd: random.Random) -> list[bytes]:
    """From (and Sender) headers: one address, several, quoted local parts, or none at all."""
    roll = rnd.random()
    if roll < 0.05:
        return []
    if roll < 0.12:
        several = [b"From: " + b", ".join(_address(rnd) for _ in range(rnd.randrange(2, 5)))]
        return several + ([b"Sender: " + _address(rnd)] if rnd.random() < 0.5 else [])
    if roll < 0.18:
        local = rnd.choice([b'"john smith"', b'"a@good.example"', b'"a\\"b"', b'" "', b'"\xe4\xb8\xad x"', b'"x'])
        return [b"From: " + rnd.choice([b"", b"Name ", b'"a@b.example" ']) + b"<" + local + b"@customer.example>"]
    return [b"From: " + (_address(rnd) if rnd.random() < 0.5 else rnd.choice(
        [b"Alice <alice@customer.example>", b"MAILER-DAEMON@mx.example", b"noreply@x.example"]))]


def _mutated(rnd: random.Random, mail: bytes) -> bytes:
    data = bytearray(mail)
    for _ in range(rnd.randrange(0, 4)):
        position = rnd.randrange(len(data) + 1)
        roll = rnd.random()
        if roll < 0.6:
            data[position:position] = rnd.choice(ODD_BYTES)
        elif roll < 0.8 and position < len(data):
            data[position] = rnd.randrange(256)
        else:
            data[position:position + rnd.randrange(1, 5)] = b""
    return bytes(data)
