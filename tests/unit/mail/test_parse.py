"""parse(): headers, addresses, ids, dates and bodies of realistic messages."""

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from maildesk.mail.parse import Address, ParsedMail, extract_ids, parse

DATA = Path(__file__).resolve().parents[2] / "data" / "parse"


def load(name: str) -> ParsedMail:
    return parse((DATA / name).read_bytes())


def test_gmail_reply_headers_are_decoded():
    mail = load("gmail_reply_alternative.eml")
    assert mail.sender == Address("María González", "Maria.Gonzalez@gmail.com")
    assert mail.to == [Address("Example Support", "support@example.com")]
    assert mail.cc == [Address("Jörg Müller", "joerg@example.org"), Address("", "ops@example.org")]
    assert mail.subject == "Re: [Übersetzung] Rechnung für März"
    assert mail.date == datetime(2024, 3, 5, 10, 14, 51, tzinfo=timezone(timedelta(hours=1)))
    assert mail.message_id == "<CAHx=3Fq7+xYz9-reply@mail.gmail.com>"
    assert not mail.message_id_synthesized
    assert mail.in_reply_to == ["<ticket-1042.1709629200@desk.example.com>"]
    assert mail.references == [
        "<ticket-1042.1709629200@desk.example.com>",
        "<CAHx=3Fq7+first@mail.gmail.com>",
    ]
    assert mail.defects == []


def test_gmail_reply_body_prefers_plain_alternative_and_keeps_html():
    mail = load("gmail_reply_alternative.eml")
    assert mail.text.startswith("Hola,\n\nla factura de marzo todavía no ha llegado.")
    assert "> Hello María" in mail.text
    assert mail.html is not None and 'class="gmail_quote"' in mail.html
    assert mail.new_text == (
        "Hola,\n\nla factura de marzo todavía no ha llegado. ¿Pueden reenviarla?\n\nGracias,\nMaría"
    )
    assert mail.attachments == []


def test_headers_are_all_kept_in_order_decoded():
    mail = load("gmail_reply_alternative.eml")
    names = [name for name, _ in mail.headers]
    assert names[:3] == ["Return-Path", "Received", "MIME-Version"]
    assert ("Subject", "Re: [Übersetzung] Rechnung für März") in mail.headers
    assert mail.message["Message-ID"] == "<CAHx=3Fq7+xYz9-reply@mail.gmail.com>"


def test_html_only_outlook_mail_becomes_readable_text():
    mail = load("outlook_html_only.eml")
    assert mail.sender == Address("Doe, John", "John.Doe@contoso.com")
    assert mail.subject == "Invoice question (urgent)"
    assert mail.text == (
        "Hi team,\n\nThe invoice total is 1.250 € – please check the invoice page "
        "<https://portal.example.com/invoices/77>.\n\n“Thanks” in advance,\nJohn"
    )
    assert "<p" not in mail.text and "MsoNormal" not in mail.text
    assert "do-not-show" not in mail.text
    assert mail.html is not None and "<script>" in mail.html


def test_nested_multipart_body_and_attachments():
    mail = load("nested_related_attachments.eml")
    assert mail.subject == "Order #42 – photos"
    assert mail.text == "See the damaged box in the picture."
    assert mail.html is not None and "cid:box-photo@shop" in mail.html
    summary = [(a.filename, a.safe_filename, a.content_type, a.inline) for a in mail.attachments]
    assert summary == [
        ("box.png", "box.png", "image/png", True),
        (
            "Rechnung März 2024 – Kopie.pdf",
            "Rechnung März 2024 – Kopie.pdf",
            "application/pdf",
            False,
        ),
        ("server.log", "server.log", "text/plain", False),
        ("übersicht.xlsx", "übersicht.xlsx", "application/octet-stream", False),
        ("C:\\Users\\evil\\..\\x.exe", "x.exe", "application/x-msdownload", False),
    ]


def test_attachment_bytes_are_decoded():
    mail = load("nested_related_attachments.eml")
    image, pdf, log, xlsx, exe = mail.attachments
    assert image.content.startswith(b"\x89PNG\r\n\x1a\n") and image.size == 70
    assert image.content_id == "box-photo@shop"
    assert pdf.content.endswith(bytes(range(256)))
    assert pdf.content_id is None
    assert log.content == b"2024-03-07 ERROR payment gateway timeout=30s"
    assert xlsx.content == b"PK\x03\x04fake-xlsx"
    assert exe.content == b"MZ"
    assert len(pdf.sha256) == 64 and pdf.sha256 != image.sha256


def test_forwarded_message_is_an_eml_attachment():
    mail = load("forwarded_rfc822.eml")
    assert mail.text == "Forwarding the customer's complaint below."
    (forwarded,) = mail.attachments
    assert forwarded.content_type == "message/rfc822"
    assert forwarded.filename == ""  # the sender gave it no name
    assert forwarded.safe_filename == "Complaint about delivery - order 9.eml"
    inner = parse(forwarded.content)
    assert inner.message_id == "<orig-1@example.org>"
    assert inner.text == "The parcel never arrived."


def test_empty_from_is_recovered_from_sender_header():
    mail = load("empty_from.eml")
    assert mail.sender == Address("Mailer Daemon", "mailer@lists.example.net")
    assert "From has no address; sender recovered from Sender" in mail.defects
    assert mail.to == []
    assert mail.reply_to == [Address("", "helpdesk-replies@lists.example.net")]


def test_empty_from_falls_back_to_reply_to_then_return_path():
    only_reply_to = b"From: <>\nReply-To: Help <help@x.org>\nSubject: s\n\nbody\n"
    assert parse(only_reply_to).sender == Address("Help", "help@x.org")
    only_path = b"From: <>\nReturn-Path: <bounces@X.org>\nSubject: s\n\nbody\n"
    mail = parse(only_path)
    assert mail.sender == Address("", "bounces@x.org")
    assert "From has no address; sender recovered from Return-Path" in mail.defects


def test_missing_from_is_a_defect():
    mail = parse(b"To: a@b.c\nSubject: no sender\n\nhello\n")
    assert mail.sender == Address("", "")
    assert "no From header" in mail.defects


def test_bare_local_part_sender_and_synthesized_id():
    raw = (DATA / "cron_bare_local.eml").read_bytes()
    mail = parse(raw)
    assert mail.sender == Address("", "root")
    assert "From: address 'root' has no domain" in mail.defects
    assert mail.message_id_synthesized
    assert mail.message_id.startswith("<") and mail.message_id.endswith("@maildesk.invalid>")
    assert parse(raw).message_id == mail.message_id
    assert parse(raw + b"x").message_id != mail.message_id
    assert "no Message-ID; synthesized one" in mail.defects


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"Doe, John" <john@x.com>', [Address("Doe, John", "john@x.com")]),
        ("Doe, John <john@X.COM>", [Address("Doe, John", "john@x.com")]),
        (
            "J. R. Doe <jrd@x.com>, ann@y.org",
            [Address("J. R. Doe", "jrd@x.com"), Address("", "ann@y.org")],
        ),
        ("john@x.com (John Doe)", [Address("John Doe", "john@x.com")]),
        (
            "=?utf-8?b?RMO8cmVy?= <d@x.de>; e@x.de",
            [Address("Dürer", "d@x.de"), Address("", "e@x.de")],
        ),
        ('"=?utf-8?q?K=C3=B6nig?=" <k@x.de>', [Address("König", "k@x.de")]),
        ("undisclosed-recipients:;", []),
        ("Team: a@x.com, b@x.com;", [Address("", "a@x.com"), Address("", "b@x.com")]),
        ("<mailto:info@x.com>", [Address("", "info@x.com")]),
    ],
)
def test_address_lists(value, expected):
    mail = parse(f"From: a@b.c\nTo: {value}\nSubject: s\n\n".encode())
    assert mail.to == expected


def test_raw_utf8_headers_decode():
    mail = parse("From: Søren Ægir <soren@x.dk>\nSubject: Ærlig talt\n\nhej\n".encode())
    assert mail.sender == Address("Søren Ægir", "soren@x.dk")
    assert mail.subject == "Ærlig talt"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<a@b> <c@d>", ["<a@b>", "<c@d>"]),
        ("<a@b>,<c@d>", ["<a@b>", "<c@d>"]),
        ("a@b c@d", ["<a@b>", "<c@d>"]),
        ('<a@b> (from "x@y" at noon) junk <c@d>', ["<a@b>", "<c@d>"]),
        ("Your message of Tue <a@b>", ["<a@b>"]),
        ("<a@b\n >", ["<a@b>"]),
        ("<>", []),
        ("", []),
        ("no ids here", []),
    ],
)
def test_extract_ids(value, expected):
    assert extract_ids(value) == expected


def test_references_are_deduplicated_in_order():
    mail = parse(b"From: a@b.c\nReferences: <1@x> <2@x>\n <1@x> 3@x\nSubject: s\n\n")
    assert mail.references == ["<1@x>", "<2@x>", "<3@x>"]


def test_malformed_message_id_gets_brackets():
    mail = parse(b"From: a@b.c\nMessage-ID: 1234.5678@host.example \nSubject: s\n\n")
    assert mail.message_id == "<1234.5678@host.example>"
    assert not mail.message_id_synthesized
    assert any("malformed Message-ID" in d for d in mail.defects)


def test_unusable_message_id_is_synthesized():
    mail = parse(b"From: a@b.c\nMessage-ID: <>\nSubject: s\n\n")
    assert mail.message_id_synthesized
    assert mail.message_id.endswith("@maildesk.invalid>")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Tue, 5 Mar 2024 10:00:00 +0100", "2024-03-05T10:00:00+01:00"),
        ("Tue, 05 Mar 2024 10:00:00 +0100 (CET)", "2024-03-05T10:00:00+01:00"),
        ("5 Mar 2024 10:00 GMT", "2024-03-05T10:00:00+00:00"),
        ("Tue, 5 Mar 24 10:00:00 EST", "2024-03-05T10:00:00-05:00"),
        ("Tue, 5 Mar 2024 10:00:00 GMT+01:00", "2024-03-05T10:00:00+01:00"),
        ("Tue, 5 Mar 2024 10:00:00 +01:00", "2024-03-05T10:00:00+01:00"),
        ("2024-03-05T10:00:00Z", "2024-03-05T10:00:00+00:00"),
        ("2024-03-05 10:00:00 +0200", "2024-03-05T10:00:00+02:00"),
    ],
)
def test_dates(value, expected):
    mail = parse(f"From: a@b.c\nDate: {value}\n\n".encode())
    assert mail.date is not None and mail.date.isoformat() == expected
    assert not any("Date" in d for d in mail.defects)


@pytest.mark.parametrize(
    "value", ["Tue, 5 Mar 2024 10:00:00", "05.03.2024 10:00:00", "Tue Mar  5 10:00:00 2024"]
)
def test_naive_dates_are_utc_with_defect(value):
    mail = parse(f"From: a@b.c\nDate: {value}\n\n".encode())
    assert mail.date == datetime(2024, 3, 5, 10, 0, tzinfo=UTC)
    assert "Date has no time zone; assumed UTC" in mail.defects


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "Tue, 45 Foo 2024 99:99",
        "",
        "Mon, 1 Jan 99999 00:00:00 +0000",
        "Sat, 31 Feb 2024 10:00 +0000",
    ],
)
def test_unparseable_dates_are_none_with_defect(value):
    mail = parse(f"From: a@b.c\nDate: {value}\n\n".encode())
    assert mail.date is None
    assert any("Date" in d for d in mail.defects)


def test_missing_date_is_a_defect():
    assert "no Date header" in parse(b"From: a@b.c\n\nhi\n").defects


def test_text_attachment_is_not_body():
    raw = (
        b"From: a@b.c\nSubject: log\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="b"\n\n'
        b"--b\nContent-Type: text/plain\n\nPlease see the log.\n"
        b'--b\nContent-Type: text/plain\nContent-Disposition: attachment; filename="a.txt"\n\n'
        b"secret log line\n--b--\n"
    )
    mail = parse(raw)
    assert mail.text == "Please see the log."
    assert [a.filename for a in mail.attachments] == ["a.txt"]
    assert mail.attachments[0].content == b"secret log line"


def test_html_too_deep_for_the_converter_still_gives_text():
    raw = (
        b"From: a@b.c\nContent-Type: text/html\n\n"
        + b"<div>" * 5000
        + b"x &amp; y"
        + b"</div>" * 5000
    )
    assert parse(raw).text == "x & y"


def test_multipart_without_boundary_is_read_as_text():
    mail = parse(b"From: a@b.c\nContent-Type: multipart/mixed\n\njust text\n")
    assert mail.text == "just text"
    assert any("NoBoundaryInMultipartDefect" in d for d in mail.defects)
