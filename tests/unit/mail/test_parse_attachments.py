"""Attachments: decoded bytes, encoded and RFC 2231 names, safe file names."""

import base64

import pytest

from maildesk.mail.parse import parse, safe_filename


def mixed(*parts: bytes) -> bytes:
    head = b'From: a@b.c\nSubject: files\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="B"\n\n'
    body = b"--B\nContent-Type: text/plain\n\nsee attached\n"
    for part in parts:
        body += b"--B\n" + part + b"\n"
    return head + body + b"--B--\n"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\evil\\x.exe", "x.exe"),
        ("..", "attachment.bin"),
        ("", "attachment.bin"),
        ("   ", "attachment.bin"),
        ("bad\x00na\x1bme\x7f.txt", "badname.txt"),
        ("...hidden", "hidden"),
        ("契約書/../.pdf", "attachment.pdf"),
        ("..pdf", "attachment.pdf"),
        (".pdf.", "attachment.pdf"),
        ("invoice..pdf", "invoice.pdf"),
        ("CON.txt", "_CON.txt"),
        ('what?<>|"*.doc', "what______.doc"),
        ("résumé 日本語.docx", "résumé 日本語.docx"),
        ("evil\u202etxt.exe", "eviltxt.exe"),
        ("a  b\tc.txt", "a b c.txt"),
    ],
)
def test_safe_filename(name, expected):
    assert safe_filename(name) == expected


@pytest.mark.parametrize(
    ("name", "content_type", "expected"),
    [
        ("", "application/pdf", "document.pdf"),
        ("/", "message/rfc822", "message.eml"),
        ("x/../.pdf", "application/octet-stream", "attachment.pdf"),
        ("", "application/octet-stream", "attachment.bin"),
        ("", "image/jpeg", "image.jpg"),
        ("", "text/html", "document.html"),
        ("", "message/delivery-status", "Delivery report.txt"),
        ("", "text/rfc822-headers", "Returned headers.txt"),
        ("", "text/calendar", "invitation.ics"),
        ("", "application/x-never-heard-of", "attachment.bin"),
    ],
)
def test_a_part_without_a_usable_name_is_named_after_its_type(name, content_type, expected):
    assert safe_filename(name, content_type) == expected


def test_safe_filename_caps_length_keeping_extension():
    name = safe_filename("x" * 500 + ".tar.gz")
    assert len(name) <= 150
    assert name.endswith("xxx.gz")
    long_unicode = safe_filename("ü" * 400 + ".pdf")
    assert long_unicode.endswith("ü.pdf") and len(long_unicode) <= 150


def test_transfer_encodings_yield_real_bytes():
    data = bytes(range(256))
    raw = mixed(
        b'Content-Type: application/octet-stream; name="b64.bin"\nContent-Transfer-Encoding: base64\n\n'
        + base64.encodebytes(data),
        b'Content-Type: text/csv; name="qp.csv"\nContent-Transfer-Encoding: quoted-printable\n\n'
        b"caf=C3=A9;1=3D1",
        b'Content-Type: text/csv; name="8bit.csv"\nContent-Transfer-Encoding: 8bit\n\n'
        + "naïve;2".encode(),
        b'Content-Type: text/csv; name="7bit.csv"\n\nplain;3',
    )
    files = {a.filename: a.content for a in parse(raw).attachments}
    assert files == {
        "b64.bin": data,
        "qp.csv": "café;1=1".encode(),
        "8bit.csv": "naïve;2".encode(),
        "7bit.csv": b"plain;3",
    }


def test_filename_encodings():
    raw = mixed(
        b"Content-Type: application/pdf\nContent-Disposition: attachment;"
        b" filename*=UTF-8''%E5%A5%91%E7%B4%84%E6%9B%B8.pdf\n\n%PDF",
        b"Content-Type: application/pdf\nContent-Disposition: attachment;"
        b" filename*=iso-8859-1'de'M%E4rz.pdf\n\n%PDF",
        b'Content-Type: application/pdf; name="=?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=.pdf"\n\n%PDF',
        b'Content-Type: application/pdf\nContent-Disposition: attachment; filename="'
        + "Größe.pdf".encode()
        + b'"\n\n%PDF',
    )
    names = [a.filename for a in parse(raw).attachments]
    assert names == ["契約書.pdf", "März.pdf", "テスト.pdf", "Größe.pdf"]


def test_rfc2231_continuations():
    raw = mixed(
        b"Content-Type: application/pdf\nContent-Disposition: attachment;"
        b" filename*0*=utf-8''%E5%A5%91; filename*1*=%E7%B4%84.pdf\n\n%PDF",
        b"Content-Type: application/pdf\nContent-Disposition: attachment;\n"
        b' filename*0="quarterly report ";\n filename*1="2024.pdf"\n\n%PDF',
        b"Content-Type: application/pdf; name*0*=iso-8859-1''M%E4rz; name*1=.pdf\n\n%PDF",
    )
    names = [(a.filename, a.safe_filename) for a in parse(raw).attachments]
    assert names == [
        ("契約.pdf", "契約.pdf"),
        ("quarterly report 2024.pdf", "quarterly report 2024.pdf"),
        ("März.pdf", "März.pdf"),
    ]


def test_name_that_sanitises_to_an_extension_keeps_it_and_the_original():
    raw = mixed(
        b"Content-Type: application/pdf\nContent-Disposition: attachment;"
        b" filename*=utf-8''%E5%A5%91%E7%B4%84%E6%9B%B8/../.pdf\n\n%PDF",
    )
    (pdf,) = parse(raw).attachments
    assert pdf.filename == "契約書/../.pdf"
    assert pdf.safe_filename == "document.pdf"


def test_duplicate_names_get_distinct_safe_names():
    raw = mixed(
        b'Content-Type: image/jpeg; name="IMG.jpg"\n\nx',
        b'Content-Type: image/jpeg; name="img.jpg"\n\ny',
        b"Content-Type: image/jpeg\n\nz",
        b"Content-Type: image/jpeg\n\nw",
    )
    attachments = parse(raw).attachments
    assert [a.safe_filename for a in attachments] == [
        "IMG.jpg",
        "img-2.jpg",
        "image.jpg",
        "image-2.jpg",
    ]
    assert [a.filename for a in attachments] == ["IMG.jpg", "img.jpg", "", ""]


def test_inline_image_without_disposition_uses_content_id():
    raw = mixed(b"Content-Type: image/gif\nContent-ID:  <logo@corp> \n\nGIF89a")
    (image,) = parse(raw).attachments
    assert image.content_id == "logo@corp"
    assert image.inline
    assert image.safe_filename == "image.gif"


def test_delivery_report_parts_are_attachments():
    raw = (
        b"From: MAILER-DAEMON@mx.example.com\nSubject: Undelivered Mail Returned to Sender\n"
        b'MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary="R"\n\n'
        b"--R\nContent-Type: text/plain\n\nYour message could not be delivered.\n"
        b"--R\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.com\n\n"
        b"Final-Recipient: rfc822; nobody@example.org\nAction: failed\nStatus: 5.1.1\n"
        b"--R\nContent-Type: text/rfc822-headers\n\nMessage-ID: <orig@x>\nSubject: hi\n"
        b"--R--\n"
    )
    mail = parse(raw)
    assert mail.text == "Your message could not be delivered."
    status, headers = mail.attachments
    assert status.content_type == "message/delivery-status"
    assert b"Status: 5.1.1" in status.content
    assert headers.content_type == "text/rfc822-headers"
    assert b"<orig@x>" in headers.content
    assert [(a.filename, a.safe_filename) for a in mail.attachments] == [
        ("", "Delivery report.txt"), ("", "Returned headers.txt")]
