"""Real-world mail that bends the rules (issue #16): broken header sections, odd senders, names, charsets."""

from __future__ import annotations

import base64

import pytest

from maildesk.mail.addresses import Address
from maildesk.mail.parse import parse, unusable_reason

# --- header sections the stdlib would end early -------------------------------------


UNFOLDED = (
    b"From: Budi Santoso <budi@pelanggan.example>\n"
    b"To: support@example.com\n"
    b"Subject: Printer in the second floor meeting room prints only blank pages since the update\n"
    b"of last Tuesday, please help\n"
    b"References: <a1@pelanggan.example>\n"
    b"<a2@pelanggan.example>\n"
    b"Message-ID: <a3@pelanggan.example>\n"
    b"Date: Mon, 2 Nov 2026 09:30:00 +0700\n"
    b"\n"
    b"Hello,\nsince the update the printer prints blank pages.\n"
)


def test_continuation_lines_without_leading_blank_are_joined() -> None:
    parsed = parse(UNFOLDED)
    assert parsed.subject == ("Printer in the second floor meeting room prints only blank pages since the update "
                              "of last Tuesday, please help")
    assert parsed.sender == Address("Budi Santoso", "budi@pelanggan.example")
    assert parsed.references == ["<a1@pelanggan.example>", "<a2@pelanggan.example>"]
    assert parsed.message_id == "<a3@pelanggan.example>"
    assert parsed.text == "Hello,\nsince the update the printer prints blank pages."
    assert ("2 header lines without a name joined to the header before "
            "(a continuation that lost its leading blank)") in parsed.defects
    # With no header after it, such a line starts the body, as the stdlib reads it.
    body_first = parse(b"From: a@pelanggan.example\nSubject: Hi\nMessage-ID: <x@p.example>\nHello there\n\nmore\n")
    assert (body_first.subject, body_first.text) == ("Hi", "Hello there\n\nmore")


@pytest.mark.parametrize(
    "junk",
    [
        b"---- Original email message ----\n",
        b">From budi@pelanggan.example Mon Nov  2 09:30:00 2026\n",
        b"\n",
        b"Saved by MailArchiver 2.1\n\n",
    ],
)
def test_junk_before_the_header_section_is_skipped(junk: bytes) -> None:
    raw = junk + UNFOLDED.replace(b"\nof last", b" of last").replace(b"\n<a2", b" <a2")
    assert unusable_reason(raw) is None
    parsed = parse(raw)
    assert parsed.sender == Address("Budi Santoso", "budi@pelanggan.example")
    assert parsed.subject.startswith("Printer in the second floor")
    assert parsed.text == "Hello,\nsince the update the printer prints blank pages."
    lines = junk.count(b"\n")
    assert f"{lines} line{'s' if lines > 1 else ''} before the header section skipped" in parsed.defects
    assert unusable_reason(junk + b"please help me.\nThanks: Budi\n") is not None  # no real headers after it


# --- odd sender syntax --------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "sender"),
    [
        (b"From: Test test@example.com", Address("Test", "test@example.com")),
        (b'From: "Budi Santoso" budi@pelanggan.example', Address("Budi Santoso", "budi@pelanggan.example")),
        (b"From: Santoso, Budi budi@pelanggan.example", Address("Santoso, Budi", "budi@pelanggan.example")),
        (b'From: "budi@pelanggan.example" <budi@pelanggan.example>', Address("", "budi@pelanggan.example")),
        (b"From: budi@pelanggan.example <BUDI@pelanggan.example>", Address("", "BUDI@pelanggan.example")),
        (b'From: "Budi Santoso" <"budi santoso"@pelanggan.example>',
         Address("Budi Santoso", '"budi santoso"@pelanggan.example')),
    ],
)
def test_odd_sender_syntax_gives_the_reply_address_and_keeps_the_name(header: bytes, sender: Address) -> None:
    assert parse(header + b"\nSubject: hi\nMessage-ID: <s@p.example>\n\nhello\n").sender == sender


def test_a_name_that_is_another_address_is_a_defect() -> None:
    parsed = parse(b'From: "ceo@example.com" <mallory@evil.example>\nSubject: Pay\n\nNow.\n')
    assert parsed.sender == Address("ceo@example.com", "mallory@evil.example")
    assert "From: the name 'ceo@example.com' is another address than 'mallory@evil.example', where replies go" \
        in parsed.defects


# --- charsets -----------------------------------------------------------------------


MICROSOFT_JIS = b'\x1b$B$*Ld$$9g$o$;-!-"!!|b66MM!!\x1b(I123\x1b(B \x1b$B#A#B#C\x1b(B'
"""お問い合わせ①②　髙橋様　ｱｲｳ ＡＢＣ as Outlook writes it: NEC row 13 and an IBM kanji under ESC $ B."""


def test_iso_2022_jp_with_microsofts_extensions_is_decoded() -> None:
    raw = (b"From: takahashi@kokyaku.example\nSubject: =?ISO-2022-JP?B?" + base64.b64encode(MICROSOFT_JIS)
           + b"?=\nMIME-Version: 1.0\nContent-Type: text/plain; charset=iso-2022-jp\n\n" + MICROSOFT_JIS + b"\n")
    parsed = parse(raw)
    assert parsed.subject == "お問い合わせ①② 髙橋様 ｱｲｳ ＡＢＣ"  # spaces of any kind made one
    assert parsed.text == "お問い合わせ①②　髙橋様　ｱｲｳ ＡＢＣ"
    assert not any("iso-2022-jp" in d.lower() for d in parsed.defects)


def test_undeclared_8bit_names_are_read_in_their_script() -> None:
    """Chinese and Cyrillic names came out as Big5, CP775 and the like; Japanese, Big5 and Latin must stay right."""
    names = [("张伟", "gbk"), ("王小明", "gb18030"), ("关于iPhone的问题", "gbk"), ("Дмитрий Иванов", "cp1251"),
             ("Иван Петров", "cp1251"), ("山田太郎", "cp932"), ("Zoom会議のご案内", "cp932"), ("陳大文", "big5"),
             ("José Müller", "cp1252"), ("Ávila", "cp1252"), ("Ça va", "cp1252"), ("Réunion à 10h", "cp1252")]
    read = [parse(b"From: " + name.encode(encoding) + b" <someone@pelanggan.example>\nSubject: hi\n\nhello\n")
            .sender.name for name, encoding in names]
    assert read == [name for name, _ in names]


def test_an_8bit_name_takes_the_charset_of_the_first_text_part() -> None:
    raw = (b"From: " + "김민수".encode("euc-kr") + b" <kim@gogaek.example>\nSubject: hi\nMIME-Version: 1.0\n"
           b"Content-Type: multipart/alternative; boundary=b\n\n--b\nContent-Type: text/plain; charset=euc-kr\n\n"
           + "안녕하세요".encode("euc-kr") + b"\n--b--\n")
    assert parse(raw).sender.name == "김민수"


def test_a_chinese_name_over_a_latin_body_is_read_as_chinese() -> None:
    raw = (b"From: " + "李娜".encode("gbk") + b" <li@kehu.example>\nSubject: hi\n"
           b"Content-Type: text/plain; charset=iso-8859-1\n\nGr\xfc\xdfe\n")
    parsed = parse(raw)
    assert parsed.sender.name == "李娜"
    assert parsed.text == "Grüße"
