"""Hostile mail the parser must read right (issue #10): senders, nesting, encodings, odd bytes."""

from __future__ import annotations

import time

import pytest

from maildesk.mail.addresses import Address
from maildesk.mail.parse import MAX_DEPTH, parse, safe_filename, with_envelope_sender

HEAD = b"To: support@example.com\nSubject: Printer on fire\nDate: Mon, 2 Nov 2026 09:30:00 +0000\n"


def mail(headers: bytes, body: bytes = b"Hello\n") -> bytes:
    return headers + HEAD + b"Message-ID: <m1@customer.example>\n\n" + body


# --- senders -----------------------------------------------------------------


def test_no_sender_at_all_leaves_it_empty_with_a_defect_and_the_envelope_fills_it() -> None:
    parsed = parse(mail(b""))
    assert parsed.sender == Address("", "")
    assert "no sender address could be recovered" in parsed.defects
    filled = with_envelope_sender(parsed, "alice@customer.example")
    assert filled.sender == Address("", "alice@customer.example")
    assert "no sender address could be recovered" not in filled.defects
    assert "no sender in the headers; taken from the envelope (MAIL FROM)" in filled.defects


@pytest.mark.parametrize("mail_from", ["", None, "not-an-address"])
def test_a_null_or_useless_envelope_sender_changes_nothing(mail_from: str | None) -> None:
    parsed = parse(mail(b""))
    assert with_envelope_sender(parsed, mail_from) is parsed


def test_a_sender_from_the_headers_is_never_replaced_by_the_envelope() -> None:
    parsed = parse(mail(b"From: Bob <bob@customer.example>\n"))
    assert with_envelope_sender(parsed, "bounces@relay.example") is parsed


def test_with_several_from_addresses_sender_decides() -> None:
    parsed = parse(mail(b"From: mallory@x.example, Alice <alice@y.example>\nSender: alice@y.example\n"))
    assert parsed.sender == Address("Alice", "alice@y.example")
    assert "From names 2 addresses; took 'alice@y.example' from Sender" in parsed.defects


def test_several_from_addresses_without_sender_take_the_first_with_a_defect() -> None:
    parsed = parse(mail(b"From: Alice <alice@y.example>, mallory@x.example\n"))
    assert parsed.sender == Address("Alice", "alice@y.example")
    assert "From names 2 addresses and there is no Sender; took the first" in parsed.defects


@pytest.mark.parametrize(
    ("header", "address"),
    [
        (b'From: "john smith"@Cust.Example\n', '"john smith"@cust.example'),
        (b'From: John <"john smith"@cust.example>\n', '"john smith"@cust.example'),
        (b'From: <"a@good.example"@evil.example>\n', '"a@good.example"@evil.example'),
        (b'From: "a@good.example"@evil.example\n', '"a@good.example"@evil.example'),
        (b'From: "a\\"b"@cust.example\n', '"a\\"b"@cust.example'),
    ],
)
def test_quoted_local_parts_are_kept_in_canonical_form(header: bytes, address: str) -> None:
    assert parse(mail(header)).sender.address == address


def test_quotes_a_local_part_does_not_need_are_dropped_and_a_quoted_whole_address_unwrapped() -> None:
    assert parse(mail(b'From: "john"@cust.example\n')).sender.address == "john@cust.example"
    assert parse(mail(b'From: <"alice@cust.example">\n')).sender.address == "alice@cust.example"


# --- nesting ------------------------------------------------------------------


TOP = (b"From: Alice <alice@customer.example>\nTo: support@example.com\nSubject: Deep\n"
       b"Message-ID: <deep@customer.example>\nMIME-Version: 1.0\n")


def nested_multiparts(levels: int) -> bytes:
    opening = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (i, i) for i in range(levels))
    closing = b"".join(b"\n--b%d--\n" % i for i in reversed(range(levels)))
    return TOP + opening + b"Content-Type: text/plain\n\nthe innermost text\n" + closing


def nested_messages(levels: int) -> bytes:
    inner = b"".join(b"Content-Type: message/rfc822\n\nSubject: level %d\n" % i for i in range(levels))
    return TOP + inner + b"\ninnermost\n"


def nested_in_odd_case(levels: int) -> bytes:
    return nested_messages(levels).replace(b"Content-Type: message/rfc822", b"cOnTeNt-TyPe: Message/RFC822")


@pytest.mark.parametrize("build", [nested_multiparts, nested_messages, nested_in_odd_case])
def test_a_thousand_levels_keep_the_top_level_headers_and_cap_the_depth(build) -> None:
    started = time.monotonic()
    parsed = parse(build(1000))
    assert time.monotonic() - started < 2, "a bound against pathological parsing, not a benchmark"
    assert parsed.sender == Address("Alice", "alice@customer.example")
    assert parsed.subject == "Deep"
    assert parsed.message_id == "<deep@customer.example>"
    assert f"MIME nesting deeper than {MAX_DEPTH} levels; the deeper parts kept as one attachment" in parsed.defects
    assert not any("could not be parsed" in d for d in parsed.defects)


def test_nesting_within_the_limit_is_read_whole() -> None:
    parsed = parse(nested_multiparts(MAX_DEPTH - 1))
    assert parsed.text == "the innermost text"
    assert not any("nesting" in d for d in parsed.defects)


def test_the_part_beyond_the_limit_becomes_one_attachment() -> None:
    parsed = parse(nested_multiparts(MAX_DEPTH + 5))
    [deeper] = parsed.attachments
    assert deeper.content_type == "application/octet-stream"
    assert b"the innermost text" in deeper.content


def test_when_the_body_cannot_be_read_the_headers_still_are(monkeypatch: pytest.MonkeyPatch) -> None:
    from maildesk.mail import parse as parse_module

    def broken(*args: object) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(parse_module, "_walk", broken)
    parsed = parse(nested_multiparts(3))
    assert parsed.sender == Address("Alice", "alice@customer.example")
    assert (parsed.subject, parsed.message_id) == ("Deep", "<deep@customer.example>")
    assert "message could not be parsed (RecursionError); kept as text" in parsed.defects


# --- a stable synthetic Message-ID -------------------------------------------------


def test_a_redelivery_with_more_trace_headers_gets_the_same_synthetic_id() -> None:
    content = b"From: alice@customer.example\nTo: support@example.com\nSubject: No id\n\nHello\n"
    first = parse(b"Received: from a by b; Mon, 2 Nov 2026 09:30:00 +0000\n" + content)
    again = parse(
        b"Received: from b by c; Mon, 2 Nov 2026 09:31:00 +0000\n"
        b"Received: from a by b; Mon, 2 Nov 2026 09:30:00 +0000\n"
        b"Return-Path: <alice@customer.example>\nDelivered-To: support@example.com\n"
        b"X-Original-To: support@example.com\nDKIM-Signature: v=1; a=rsa-sha256;\n b=abc\n"
        b"ARC-Seal: i=1; cv=none\nAuthentication-Results: mx.example; spf=pass\n" + content
    )
    assert first.message_id_synthesized and again.message_id_synthesized
    assert first.message_id == again.message_id
    other = parse(content.replace(b"Hello", b"Hello again"))
    assert other.message_id != first.message_id


# --- odd bytes and encodings ---------------------------------------------------------


def test_a_nul_in_a_header_is_a_defect_not_a_failure() -> None:
    parsed = parse(mail(b"From: Alice <alice@customer.example>\nX-Junk: a\x00b\n"))
    assert parsed.sender.address == "alice@customer.example"
    assert "NUL byte in the header section; removed" in parsed.defects


def test_a_header_line_over_998_characters_is_a_defect() -> None:
    started = time.monotonic()
    parsed = parse(mail(b"From: alice@customer.example\nX-Long: " + b"x" * 10_000_000 + b"\n"))
    assert time.monotonic() - started < 2, "a bound against pathological parsing, not a benchmark"
    assert "header line longer than 998 characters (RFC 5322 §2.1.1)" in parsed.defects
    assert parsed.subject == "Printer on fire"


def test_an_unknown_transfer_encoding_is_an_opaque_attachment() -> None:
    raw = mail(
        b"From: alice@customer.example\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n",
        b"--b\nContent-Type: text/plain\n\nSee attached.\n"
        b"--b\nContent-Type: text/plain\nContent-Transfer-Encoding: x-uuencode-weird\n\nM9V]O9&)Y90``\n--b--\n",
    )
    parsed = parse(raw)
    assert parsed.text == "See attached."
    [attachment] = parsed.attachments
    assert attachment.content_type == "application/octet-stream"
    assert attachment.content == b"M9V]O9&)Y90``"
    assert ("text/plain: unknown Content-Transfer-Encoding 'x-uuencode-weird'; "
            "kept as an application/octet-stream attachment (RFC 2049)") in parsed.defects


def test_invalid_base64_is_a_defect() -> None:
    raw = mail(
        b"From: alice@customer.example\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n",
        b"--b\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\n!!!not base64===\n"
        b"--b\nContent-Type: application/pdf\nContent-Transfer-Encoding: base64\n\nJVBERi0*\n--b--\n",
    )
    defects = parse(raw).defects
    assert "text/plain: invalid base64 (InvalidBase64LengthDefect); decoded what could be" in defects
    assert "application/pdf: invalid base64 (InvalidBase64CharactersDefect); decoded what could be" in defects


def test_a_boundary_over_70_characters_is_a_defect() -> None:
    boundary = b"b" * 71
    raw = mail(b"From: alice@customer.example\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="
               + boundary + b"\n", b"--" + boundary + b"\nContent-Type: text/plain\n\nhi\n--" + boundary + b"--\n")
    parsed = parse(raw)
    assert parsed.text == "hi"
    assert "multipart/mixed: boundary longer than 70 characters (71)" in parsed.defects


@pytest.mark.parametrize("control", ["\u202e", "\u2067", "\u200f"])
def test_a_file_name_with_bidi_controls_is_a_defect_and_its_safe_name_drops_them(control: str) -> None:
    name = f"invoice{control}fdp.exe"
    raw = mail(
        b"From: alice@customer.example\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n",
        b"--b\nContent-Type: application/octet-stream\nContent-Disposition: attachment; filename*=utf-8''"
        + name.encode().replace(control.encode(), b"".join(b"%%%02X" % c for c in control.encode()))
        + b"\n\nMZ\n--b--\n",
    )
    parsed = parse(raw)
    [attachment] = parsed.attachments
    assert attachment.filename == name
    assert attachment.safe_filename == safe_filename(name) == "invoicefdp.exe"
    assert ("attachment 'invoicefdp.exe': the file name has bidi control characters, which can disguise it"
            in parsed.defects)
