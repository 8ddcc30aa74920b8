"""Mail carrying what a database refuses, or what trips a library, still ends as a ticket, on both databases.

PostgreSQL cannot keep a NUL or a lone surrogate in text, enforces column
lengths and limits an index entry to about 2,700 bytes; SQLite does none
of that. Python's own decoders and header parser raise on some input. The
same mail must give the same ticket on both databases, and be marked done,
never failed or left queued. Most cases were found by fuzzing ingestion.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from maildesk import spool
from maildesk.models import Attachment, Message, Outbox, Ticket
from tests.helpers import Desk

_HEAD = (b"From: Alice <alice@customer.example>\r\nTo: support@example.com\r\n"
         b"Date: Mon, 02 Nov 2026 09:30:00 +0000\r\n")
_DATE = b"Date: Mon, 02 Nov 2026 09:30:00 +0000"
_MULTIPART = b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n"
_BOUNCE = (b"From: MAILER-DAEMON@mx.example\r\nTo: support@example.com\r\nSubject: Undeliverable: x\r\n"
           b"Date: Mon, 02 Nov 2026 09:30:00 +0000\r\n")
_LONG_CJK = "".join(chr(0x4E00 + i) for i in range(990)).encode()  # 990 characters, 2,970 bytes


def _mail(n: int, headers: bytes, body: bytes = b"hello\r\n", head: bytes = _HEAD) -> bytes:
    return head + f"Message-ID: <hostile-{n}@customer.example>\r\n".encode() + headers + b"\r\n" + body


def _part(headers: bytes, body: bytes = b"data") -> bytes:
    return b"--b\r\nContent-Type: text/plain\r\n\r\nsee below\r\n--b\r\n" + headers + b"\r\n\r\n" + body + b"\r\n--b--\r\n"


HOSTILE = {
    "NUL in an encoded-word subject": _mail(1, b"Subject: =?utf-8?q?bill=00ing?=\r\n"),
    "NUL in an encoded-word display name": _mail(2, b"Subject: x\r\nCc: =?utf-8?q?B=00ob?= <bob@customer.example>\r\n"),
    "NUL in the HTML body": _mail(
        3, b"Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n", b"<p>a\x00b</p>\r\n"),
    "NUL in an RFC 2231 filename": _mail(4, b"Subject: x\r\n" + _MULTIPART, _part(
        b"Content-Type: application/pdf\r\nContent-Disposition: attachment; filename*=utf-8''in%00voice.pdf")),
    "NUL written in a part's header": _mail(5, b"Subject: x\r\n" + _MULTIPART, _part(
        b"Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"in\x00voice.pdf\"")),
    "a Content-ID over 998 characters": _mail(6, b"Subject: x\r\n" + _MULTIPART, _part(
        b"Content-Type: image/png\r\nContent-Disposition: inline\r\nContent-ID: <" + b"c" * 1200 + b"@x>")),
    "NUL in a Thread-Index": _mail(7, b"Subject: x\r\nThread-Index: A\x00B\r\n"),
    "NUL in a part's content type": _mail(8, b"Subject: x\r\n" + _MULTIPART, _part(b"Content-Type: application/x\x00y")),
    "NUL in a part's Content-ID": _mail(9, b"Subject: x\r\n" + _MULTIPART, _part(
        b"Content-Type: image/png\r\nContent-ID: <a\x00b@x>")),
    "NUL in an auto-reply header": _mail(10, b"Subject: x\r\nAuto-Submitted: auto-replied\x00x\r\n"),
    "NUL in X-Failed-Recipients": _mail(11, b"Subject: x\r\nX-Failed-Recipients: a\x00b@x\r\n"),
    "NUL in a bounced Message-ID": _mail(12, b"", b"Message-ID: <a\x00b@localhost>\r\n", head=_BOUNCE),
    "a broken base64 encoded word in a list header": _mail(13, b"Subject: x\r\nList-Id: =?utf-8?B?QUJDR?=\r\n"),
    "an 8-bit charset name in an encoded word": _mail(14, b"Subject: x\r\nList-Id: =?utf\xff8?Q?a?=\r\n"),
    "a UTF-7 encoded word that decodes to a surrogate": _mail(15, b"Subject: x\r\nList-Id: =?utf-7?Q?+2AA-?=\r\n"),
    "a bounce body labelled idna": _mail(16, b"Content-Type: text/plain; charset=idna\r\n", b"x\r\n", head=_BOUNCE),
    "a bounce body labelled unicode_escape": _mail(
        17, b"Content-Type: text/plain; charset=unicode_escape\r\n", b"Message-ID: <\\ud800@localhost>\r\n",
        head=_BOUNCE),
    "a display name in raw_unicode_escape": _mail(
        18, b"Subject: x\r\n",
        head=_HEAD.replace(b"From: Alice", b"From: =?raw_unicode_escape?Q?=DF\\ud800=01=FF=00?=")),
    "a Date past year 9999 in UTC": _mail(19, b"Subject: x\r\n",
                                          head=_HEAD.replace(_DATE, b"Date: Fri, 31 Dec 9999 23:00:00 -0100")),
    "a Date before year 1 in UTC": _mail(20, b"Subject: x\r\n",
                                         head=_HEAD.replace(_DATE, b"Date: 0001-01-01T00:00:00+01:00")),
    "a Message-ID of 990 CJK characters": (
        b"From: alice@customer.example\r\nTo: support@example.com\r\nSubject: x\r\nMessage-ID: <"
        + _LONG_CJK + b"@x>\r\n\r\nhello\r\n"),
    "a Reference of 990 CJK characters": _mail(21, b"Subject: x\r\nReferences: <" + _LONG_CJK + b"@y>\r\n"),
}


@pytest.mark.parametrize("raw", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_mail_is_stored(desk: Desk, raw: bytes) -> None:
    outcome = desk.ingest(raw)
    assert outcome.state == spool.DONE, outcome.detail
    if outcome.ticket_id is not None:  # an automated mail answering no ticket goes nowhere
        stored = repr(desk.ticket(outcome.ticket_id))
        assert "\\x00" not in stored and "\\ud8" not in stored


def test_nul_characters_are_dropped_not_the_text_around_them(desk: Desk) -> None:
    ticket = desk.ticket(desk.ingest(HOSTILE["NUL in an encoded-word subject"]).ticket_id)
    assert ticket["subject"] == "billing"
    desk.ingest(HOSTILE["NUL in the HTML body"])
    with desk.db.session() as session:
        assert "<p>ab</p>" in session.scalar(select(Message.body_html).where(Message.body_html.is_not(None)))
    [attachment] = desk.ticket(desk.ingest(HOSTILE["NUL in an RFC 2231 filename"]).ticket_id)["messages"][0][
        "attachments"]
    assert attachment["filename"] == "invoice.pdf"


def test_an_over_long_content_id_is_cut_to_a_header_line(desk: Desk) -> None:
    desk.ingest(HOSTILE["a Content-ID over 998 characters"])
    with desk.db.session() as session:
        [content_id] = session.scalars(select(Attachment.content_id))
    assert content_id is not None and len(content_id) == 998 and content_id.startswith("ccc")


def test_a_long_non_ascii_message_id_is_cut_to_998_bytes_and_still_threads(desk: Desk) -> None:
    first = desk.ingest(HOSTILE["a Message-ID of 990 CJK characters"])
    message_id = "<" + _LONG_CJK.decode() + "@x>"
    reply = (b"From: alice@customer.example\r\nTo: support@example.com\r\nSubject: more\r\n"
             b"Message-ID: <reply@customer.example>\r\nIn-Reply-To: " + message_id.encode() + b"\r\n\r\nmore\r\n")
    assert desk.ingest(reply).ticket_id == first.ticket_id
    with desk.db.session() as session:
        stored = session.scalar(select(Message.message_id).where(Message.ticket_id == first.ticket_id)
                                .order_by(Message.id).limit(1))
    assert stored is not None and len(stored.encode()) <= 998 and message_id.startswith(stored)


def test_a_date_out_of_range_is_a_defect_not_a_failure(desk: Desk) -> None:
    outcome = desk.ingest(HOSTILE["a Date past year 9999 in UTC"])
    message = desk.ticket(outcome.ticket_id)["messages"][0]
    assert message["date"] is None
    assert any("Date" in defect for defect in message["defects"])


def test_an_acknowledgement_that_cannot_be_written_is_suppressed_with_the_reason(desk: Desk) -> None:
    """An address the relay could not take (Python's header parser raises AttributeError on it too):
    the ticket is kept, the mail not sent."""
    raw = _mail(30, b"Subject: x\r\n", head=_HEAD.replace(b"From: Alice <alice@customer.example>", b"From: a@[\xc3\xa9"))
    outcome = desk.ingest(raw, notify=True)
    assert outcome.state == spool.DONE, outcome.detail
    with desk.db.session() as session:
        [row] = session.scalars(select(Outbox))
        assert row.status == "suppressed" and "not a deliverable address" in row.reason
        assert session.get(Ticket, outcome.ticket_id) is not None


def test_the_out_of_range_dates_really_are_out_of_range() -> None:
    """Guards the two Date cases above: each is valid in its own zone and overflows in UTC."""
    for text in ("9999-12-31T23:00:00-01:00", "0001-01-01T00:00:00+01:00"):
        with pytest.raises(OverflowError):
            datetime.fromisoformat(text).astimezone(UTC)
