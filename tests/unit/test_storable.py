"""Mail carrying what a database refuses (NUL characters, over-long ids) is still stored, on both databases.

PostgreSQL cannot keep a NUL in text and enforces column lengths; SQLite
does neither. The same mail must give the same ticket on both.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from maildesk import spool
from maildesk.models import Attachment, Message
from tests.helpers import Desk

_HEAD = (b"From: Alice <alice@customer.example>\r\nTo: support@example.com\r\n"
         b"Date: Mon, 02 Nov 2026 09:30:00 +0000\r\n")


def _mail(n: int, headers: bytes, body: bytes) -> bytes:
    return _HEAD + f"Message-ID: <hostile-{n}@customer.example>\r\n".encode() + headers + b"\r\n" + body


_MULTIPART = (b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n")

HOSTILE = {
    "NUL in an encoded-word subject": _mail(1, b"Subject: =?utf-8?q?bill=00ing?=\r\n", b"hello\r\n"),
    "NUL in an encoded-word display name": _mail(
        2, b"Subject: x\r\nCc: =?utf-8?q?B=00ob?= <bob@customer.example>\r\n", b"hello\r\n"),
    "NUL in the HTML body": _mail(
        3, b"Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n", b"<p>a\x00b</p>\r\n"),
    "NUL in an RFC 2231 filename": _mail(4, b"Subject: x\r\n" + _MULTIPART, (
        b"--b\r\nContent-Type: text/plain\r\n\r\nsee file\r\n"
        b"--b\r\nContent-Type: application/pdf\r\n"
        b"Content-Disposition: attachment; filename*=utf-8''in%00voice.pdf\r\n\r\nPDF\r\n--b--\r\n")),
    "NUL written in a part's header": _mail(5, b"Subject: x\r\n" + _MULTIPART, (
        b"--b\r\nContent-Type: text/plain\r\n\r\nsee file\r\n"
        b"--b\r\nContent-Type: application/pdf\r\n"
        b"Content-Disposition: attachment; filename=\"in\x00voice.pdf\"\r\n\r\nPDF\r\n--b--\r\n")),
    "a Content-ID over 998 characters": _mail(6, b"Subject: x\r\n" + _MULTIPART, (
        b"--b\r\nContent-Type: text/plain\r\n\r\nsee image\r\n"
        b"--b\r\nContent-Type: image/png\r\nContent-Disposition: inline\r\n"
        b"Content-ID: <" + b"c" * 1200 + b"@x>\r\n\r\nPNG\r\n--b--\r\n")),
}


@pytest.mark.parametrize("raw", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_mail_with_what_a_database_refuses_is_stored(desk: Desk, raw: bytes) -> None:
    outcome = desk.ingest(raw)
    assert outcome.state == spool.DONE, outcome.detail
    assert "\x00" not in repr(desk.ticket(outcome.ticket_id))


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
