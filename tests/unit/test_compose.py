"""compose: threading headers, loop guards, both parts, and no header injection."""

from __future__ import annotations

import base64
import email
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from email.policy import default

import pytest

from maildesk.mail import classify
from maildesk.mail.compose import (
    Outgoing,
    clean,
    compose,
    new_message_id,
    references_for,
    thread_index,
    thread_topic,
)
from maildesk.mail.parse import parse

NOW = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


def outgoing(**overrides: object) -> Outgoing:
    values: dict[str, object] = {
        "from_address": "support@example.com",
        "from_name": "ACME Support",
        "to": [("Alice Customer", "alice@customer.example")],
        "subject": "[#7] We have received your request: Printer on fire",
        "text": "Hello Alice,\n\nwe got it.\n",
        "html": "<p>Hello Alice,</p><p>we got it.</p>",
        "message_id": "<ack-7@desk.example.com>",
        "date": NOW,
        "in_reply_to": "<q2@customer.example>",
        "references": ["<q1@customer.example>", "<q2@customer.example>"],
        "auto_submitted": "auto-replied",
        "bulk": True,
        "loop": "support@example.com",
    }
    values.update(overrides)
    return Outgoing(**values)  # type: ignore[arg-type]


def reparsed(out: Outgoing) -> email.message.EmailMessage:
    return email.message_from_bytes(compose(out).as_bytes(), policy=default)  # type: ignore[return-value]


def test_an_acknowledgement_threads_and_carries_every_loop_guard() -> None:
    mail = reparsed(outgoing())

    assert str(mail["From"]) == "ACME Support <support@example.com>"
    assert str(mail["To"]) == "Alice Customer <alice@customer.example>"
    assert mail["Message-ID"] == "<ack-7@desk.example.com>"
    assert mail["In-Reply-To"] == "<q2@customer.example>"
    assert mail["References"].split() == ["<q1@customer.example>", "<q2@customer.example>"]
    assert mail["Auto-Submitted"] == "auto-replied"
    assert mail["Precedence"] == "bulk"
    assert mail["X-Loop"] == "support@example.com"
    assert mail["X-Auto-Response-Suppress"] == "All"
    assert mail["Thread-Topic"] == "[#7] We have received your request: Printer on fire"
    assert len(base64.b64decode(mail["Thread-Index"])) == 22


def test_a_person_written_mail_has_no_auto_headers() -> None:
    mail = reparsed(outgoing(auto_submitted=None, bulk=False))
    assert mail["Auto-Submitted"] is None and mail["Precedence"] is None
    assert mail["X-Auto-Response-Suppress"] == "All"  # still: no out-of-office for our mail


def test_both_parts_are_there() -> None:
    mail = reparsed(outgoing(text="Grüße aus Jakarta\n"))
    assert mail.get_content_type() == "multipart/alternative"
    assert mail.get_body(("plain",)).get_content().strip() == "Grüße aus Jakarta"
    assert "<p>we got it.</p>" in mail.get_body(("html",)).get_content()
    assert compose(outgoing(text="Grüße\n")).as_bytes().isascii()  # 7bit: any relay takes it


@pytest.mark.parametrize(
    ("subject", "name"),
    [
        ("Help\r\nBcc: evil@attacker.example", "Alice"),
        ("Help", "Mallory\r\nBcc: evil@attacker.example"),
        ("Help\nX-Injected: yes\r\n\r\nbody", "Mal\rlory\x00\n"),
        # Python's email package decodes an encoded word it is given and writes its CR/LF as is.
        ("Help =?utf-8?q?=0D=0ABcc:_evil@attacker.example?=", "Alice"),
        ("Help", "=?utf-8?q?Mal=0D=0ABcc:_evil@attacker.example?="),
        ("=?utf-8?b?PT91dGYtOD9xPz0wRD0wQUJjYzpfZXZpbEBhdHRhY2tlci5leGFtcGxlPz0=?=", "Alice"),
    ],
)
def test_header_injection_in_subject_or_name_yields_one_safe_header(subject: str, name: str) -> None:
    raw = compose(outgoing(subject=subject, to=[(name, "alice@customer.example")])).as_bytes()
    mail = email.message_from_bytes(raw, policy=default)

    assert "Bcc" not in mail and "X-Injected" not in mail
    assert len(mail.get_all("Subject")) == 1 and len(mail.get_all("To")) == 1
    assert [a.addr_spec for a in mail["To"].addresses] == ["alice@customer.example"]
    header_block = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nBcc:" not in header_block and b"\r\nX-Injected" not in header_block
    assert "\r" not in str(mail["Subject"]) and "\n" not in str(mail["Subject"])


def test_clean_turns_control_characters_into_single_spaces() -> None:
    assert clean("a\r\nb\tc\x00d  e\n") == "a b c d e"


def test_clean_drops_an_encoded_word_the_email_package_cannot_decode() -> None:
    assert clean("user@=?utf-8?B?QUJDR?= x") == "user@ x"  # bad base64 padding: HeaderParseError


def test_a_long_subject_is_folded_and_reads_back_whole() -> None:
    subject = "[#7] " + " ".join(["word"] * 60)
    raw = compose(outgoing(subject=subject)).as_bytes()
    header_block = raw.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in header_block.split(b"\r\n")) <= 78
    assert parse(raw).subject == subject


def test_a_bad_recipient_is_a_value_error_not_a_broken_mail() -> None:
    with pytest.raises(ValueError, match="not an address"):
        compose(outgoing(to=[("x", "no-at-sign")]))
    with pytest.raises(ValueError, match="recipient"):
        compose(outgoing(to=[]))


def test_references_keep_the_root_and_the_newest() -> None:
    parents = [f"<r{i}@x.example>" for i in range(30)]
    chain = references_for("<parent@x.example>", parents)
    assert len(chain) == 20 and chain[0] == "<r0@x.example>" and chain[-1] == "<parent@x.example>"
    assert references_for("<p@x.example>", []) == ["<p@x.example>"]
    assert references_for(None, []) == []


def test_thread_index_is_a_child_of_the_customers_or_a_stable_root() -> None:
    root = thread_index(None, "<root@x.example>", NOW)
    assert len(base64.b64decode(root)) == 22
    child = thread_index(root, "<ignored@x.example>", NOW + timedelta(hours=1))
    assert base64.b64decode(child)[:22] == base64.b64decode(root) and len(base64.b64decode(child)) == 27
    # The GUID part comes from the conversation's root id: every mail of a ticket shares it.
    later = thread_index(None, "<root@x.example>", NOW + timedelta(days=1))
    assert base64.b64decode(later)[6:] == base64.b64decode(root)[6:]
    assert len(base64.b64decode(thread_index("not base64!", "<root@x.example>", NOW))) == 22


def test_thread_topic_drops_reply_prefixes() -> None:
    assert thread_topic("Re: AW: Fwd: Printer\r\n on fire") == "Printer on fire"


def test_message_ids_are_ours_and_unique() -> None:
    ids = {new_message_id("desk.example.com") for _ in range(100)}
    assert len(ids) == 100 and all(i.startswith("<") and i.endswith("@desk.example.com>") for i in ids)


def test_our_own_acknowledgement_coming_back_is_a_loop() -> None:
    raw = compose(outgoing()).as_bytes()
    verdict = classify.classify(parse(raw).message, "support@example.com",
                                loop_ids=["support@example.com"], own_domains=["desk.example.com"])
    assert verdict.kind == classify.LOOP


def header_lines(raw: bytes) -> list[bytes]:
    return raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def content(part: email.message.EmailMessage) -> str:
    """A text part's text; read back from the wire, its line breaks are CRLF."""
    return str(part.get_content()).replace("\r\n", "\n")


def test_a_long_non_ascii_subject_is_folded_encoded_and_reads_back_whole() -> None:
    subject = "[#7] Ihre Anfrage zur Größe – " + " ".join(["Überweisung"] * 12) + " 日本語のお問い合わせ " * 4 + "x" * 120
    raw = compose(outgoing(subject=subject, topic=subject)).as_bytes()
    assert raw.isascii()
    assert max(len(line) for line in header_lines(raw)) <= 78
    mail = email.message_from_bytes(raw, policy=default)
    assert mail["Subject"] == clean(subject)
    assert mail["Thread-Topic"] == thread_topic(subject)  # one space around "–", not two
    assert parse(raw).subject == clean(subject)


@pytest.mark.parametrize(
    "name",
    ['Smith, "Bob" \\ Jr.', "O'Neil (Ops)", "Müller, Jürgen \"JM\"", "山田 太郎", "=? not an encoded word ?="],
)
def test_display_names_with_commas_quotes_and_non_ascii_read_back(name: str) -> None:
    mail = reparsed(outgoing(to=[(name, "alice@customer.example"), ("Bob", "bob@customer.example")]))
    assert [(a.display_name, a.addr_spec) for a in mail["To"].addresses] == [
        (name, "alice@customer.example"), ("Bob", "bob@customer.example")]


def test_a_long_non_ascii_display_name_is_folded_into_encoded_words() -> None:
    name = " ".join(["Ünïcödé"] * 14)
    raw = compose(outgoing(to=[(name, "u@customer.example"), ("Bob, Jr.", "bob@customer.example")])).as_bytes()
    assert max(len(line) for line in header_lines(raw)) <= 78
    to = b"".join(raw.split(b"\r\nTo: ", 1)[1].split(b"\r\nSubject:", 1)[0].split(b"\r\n")).decode()
    # RFC 2047 §6.2 decoding (the stdlib's address parser keeps the space between encoded words).
    assert str(make_header(decode_header(to))) == f'{name} <u@customer.example>, "Bob, Jr." <bob@customer.example>'
    assert [a.name for a in parse(raw).to] == [name, "Bob, Jr."]


def test_every_line_ends_in_crlf_and_bodies_read_back() -> None:
    text = "Grüße aus Jakarta\r\nZeile zwei\rZeile drei\n" + "lang " * 40 + "\n"
    html = "<p>" + "Grüße " * 50 + "</p>"
    raw = compose(outgoing(text=text, html=html)).as_bytes()
    assert raw.isascii() and raw.endswith(b"\r\n")
    assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78
    mail = email.message_from_bytes(raw, policy=default)
    plain, rich = mail.iter_parts()
    assert (plain.get_content_type(), rich.get_content_type()) == ("text/plain", "text/html")
    assert plain["Content-Transfer-Encoding"] == "quoted-printable"
    assert content(plain) == "Grüße aus Jakarta\nZeile zwei\nZeile drei\n" + "lang " * 40 + "\n"
    assert content(rich) == html + "\n"


def test_quoted_printable_lines_keep_to_76_characters() -> None:
    """RFC 2045 §6.7: the email package's own encoder would write lines of 78."""
    text = "Grüße " + "x" * 200 + "\n" + "eine lange Zeile " * 10 + "é\n" + "x" * 75 + " \n" + "y" * 74 + "\t\n"
    raw = compose(outgoing(text=text, html=None)).as_bytes()
    body = raw.split(b"\r\n\r\n", 1)[1]
    assert b"quoted-printable" in raw and max(len(line) for line in body.split(b"\r\n")) <= 76
    assert content(email.message_from_bytes(raw, policy=default)) == text


def test_text_that_quoted_printable_would_triple_goes_as_base64() -> None:
    text = "Здравствуйте, мы получили ваш запрос.\n" * 3
    mail = reparsed(outgoing(text=text, html=None))
    assert mail.get_content_type() == "text/plain" and mail["MIME-Version"] == "1.0"
    assert mail["Content-Transfer-Encoding"] == "base64"
    assert content(mail) == text


def test_short_ascii_text_stays_7bit() -> None:
    mail = reparsed(outgoing(text="Hello Alice,\n\nwe got it.\n", html=None))
    assert mail["Content-Transfer-Encoding"] == "7bit"
    assert content(mail) == "Hello Alice,\n\nwe got it.\n"


def test_a_body_that_looks_like_a_boundary_does_not_split_the_mail() -> None:
    text = "--=_\n--=_0123456789abcdef0123456789abcdef\n--\n"
    mail = reparsed(outgoing(text=text, html="<p>--=_</p>"))
    plain, rich = mail.iter_parts()
    assert content(plain) == text and content(rich) == "<p>--=_</p>\n"


def test_message_ids_are_folded_between_and_never_encoded() -> None:
    long_id = "<" + "x" * 90 + "@customer.example>"
    references = [long_id, *(f"<r{i}.{'z' * 20}@customer.example>" for i in range(6))]
    raw = compose(outgoing(references=references, in_reply_to=long_id)).as_bytes()
    assert f"In-Reply-To: {long_id}\r\n".encode() in raw
    assert b"=?" not in raw.split(b"\r\nReferences:", 1)[1].split(b"\r\nThread-Topic:", 1)[0]
    assert reparsed(outgoing(references=references))["References"].split() == references


def test_undecodable_bytes_and_non_ascii_addresses_still_make_a_7bit_mail() -> None:
    subject = "Caf\udce9 order"  # a header byte the parser kept as a surrogate escape
    raw = compose(outgoing(subject=subject, to=[("Jürgen", "jürgen@customer.example")])).as_bytes()
    assert raw.isascii()
    assert "Caf" in email.message_from_bytes(raw, policy=default)["Subject"]


def test_the_composed_message_reads_like_a_parsed_one() -> None:
    mail = compose(outgoing(subject="Grüße – [#7]", to=[('Smith, "Bob"', "bob@customer.example")]))
    assert mail["Subject"] == "Grüße – [#7]"
    assert [a.display_name for a in mail["To"].addresses] == ['Smith, "Bob"']
    assert mail.get_body(("plain",)).get_content() == "Hello Alice,\n\nwe got it.\n"
