"""compose_bytes(): the very bytes the email package writes for compose()'s message."""

from __future__ import annotations

import email
import email.generator
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import default

import pytest

from maildesk.mail import compose as compose_module
from maildesk.mail.compose import Outgoing, OutgoingAttachment, compose, compose_bytes, thread_index
from maildesk.mail.parse import parse
from tests.unit import test_compose as compose_test

NOW = compose_test.NOW
TOKEN = "5a" * 16
"""What secrets.token_hex(16) returns under the fixed_boundary fixture."""
ACK_TEXT = (
    "Hello Alice,\n\nwe have received your request and opened ticket #7 for it.\n"
    "Reply to this mail to add to it.\n\nACME Support\n"
)


@pytest.fixture
def fixed_boundary(monkeypatch: pytest.MonkeyPatch) -> None:
    """compose() and compose_bytes() draw the same multipart boundary."""
    monkeypatch.setattr(secrets, "token_hex", lambda nbytes: TOKEN)


def outgoing(**overrides: object) -> Outgoing:
    """test_compose's acknowledgement, with a longer text."""
    return compose_test.outgoing(**{"text": ACK_TEXT, **overrides})


ROOT_INDEX = thread_index(None, "<q1@customer.example>", NOW - timedelta(days=2))
LONG_ID = "<" + "x" * 90 + "@customer.example>"

CASES: dict[str, dict[str, object]] = {
    "acknowledgement": {},
    "text only": {"html": None},
    # Display names.
    "quotes, commas and backslashes": {"to": [('Smith, "Bob" \\ Jr.', "bob@customer.example")]},
    "parentheses and an apostrophe": {"to": [("O'Neil (Ops)", "oneil@customer.example")]},
    "non-ascii name with quotes and a comma": {"to": [('Müller, Jürgen "JM"', "jm@customer.example")]},
    "cjk name": {"to": [("山田 太郎", "yamada@customer.example")]},
    "emoji name": {"to": [("Ana 🎉 López", "ana@customer.example")], "from_name": "ACME 🛠 Support"},
    "crlf in a name": {"to": [("Mallory\r\nBcc: evil@attacker.example", "m@customer.example")]},
    "encoded crlf in a name": {"to": [("=?utf-8?q?Mal=0D=0ABcc:_evil@attacker.example?=", "m@customer.example")]},
    "name that looks encoded": {"to": [("=? not an encoded word ?=", "n@customer.example")]},
    "long non-ascii name": {"to": [(" ".join(["Ünïcödé"] * 14), "u@customer.example")]},
    "no names": {"to": [("", "alice@customer.example")], "from_name": ""},
    "several recipients": {"to": [
        ("Alice Customer", "alice@customer.example"), ("", "bob@customer.example"),
        ("Zoë, CFO", "zoe@customer.example"), ("Carol " * 12, "carol@customer.example"),
    ]},
    # Subjects.
    "crlf in the subject": {"subject": "Help\r\nBcc: evil@attacker.example"},
    "controls in the subject": {"subject": "Help\nX-Injected: yes\r\n\r\nbody\x00\t end"},
    "long subject": {"subject": "[#7] " + " ".join(["word"] * 60)},
    "long non-ascii subject": {
        "subject": "[#7] Ihre Anfrage zur Größe – " + " ".join(["Überweisung"] * 12) + " 日本語のお問い合わせ " * 4 + "x" * 120,
    },
    "emoji subject": {"subject": "Danke 🙏🏽 für alles 👍"},
    "encoded word subject": {"subject": "=?utf-8?q?Gr=C3=BC=C3=9Fe?= and more"},
    "encoded crlf subject": {"subject": "Help =?utf-8?q?=0D=0ABcc:_evil@attacker.example?="},
    "broken encoded word subject": {"subject": "=?utf-8?x?broken?= =?nonsense?q?abc?="},
    "empty subject": {"subject": ""},
    "separate topic": {"subject": "Re: AW: [#7] Printer", "topic": "Printer on fire – 3rd floor"},
    # Bodies.
    "ascii short lines": {"text": "Hello Alice,\n\nwe got it.\n", "html": "<p>we got it.</p>\n"},
    "ascii long line": {"text": "Hello,\n" + "lang " * 40 + "\nbye\n"},
    "trailing whitespace": {"text": "Hello   \nwith a tab\t\n" + "é\n"},
    "latin text": {"text": "Grüße aus Jakarta\nZeile zwei\n", "html": "<p>" + "Grüße " * 50 + "</p>"},
    "more than ten lines of latin": {"text": "".join(f"Zeile {i}: Größe\n" for i in range(25))},
    "mostly cyrillic": {"text": "Здравствуйте, мы получили ваш запрос.\n" * 3, "html": None},
    "mostly cjk html": {"html": "<p>" + "日本語のお問い合わせ" * 20 + "</p>"},
    "emoji text": {"text": "👍" * 40 + "\n"},
    "empty text": {"text": ""},
    "empty text alone": {"text": "", "html": None},
    "empty html": {"html": ""},
    "no trailing newline": {"text": "Hello Alice", "html": "<p>Hello</p>"},
    "crlf line endings": {"text": "Hello\r\nAlice\r\n\r\nbye\r\n"},
    "mixed line endings": {"text": "a\r\nb\rc\nd\n\n\r\r\n"},
    "only line breaks": {"text": "\n\n\r\n"},
    "form feed and vertical tab": {"text": "page one\x0cpage two\x0bthree\n"},
    "unicode line separators": {"text": "one\u2028two\u2029three\x85four\n"},
    "lines starting with From and dots": {"text": "From here on\n.\n..\n-- \nsig\n"},
    "body that looks like a boundary": {"text": "--=_\n--=_0123456789abcdef\n--\n", "html": "<p>--=_</p>"},
    "long ascii html": {"html": "<html><body>" + "<p>paragraph</p>" * 40 + "</body></html>"},
    # The email package's fallbacks.
    "surrogate in the subject": {"subject": "Caf\udce9 order"},
    "surrogate in a name": {"to": [("Jos\udce9", "jose@customer.example")]},
    "surrogate in the topic": {"topic": "Caf\udce9 \udcff\udc80"},
    "non-ascii domain": {"to": [("Jürgen", "juergen@müller.example")]},
    "non-ascii local part": {"to": [("", "jürgen@customer.example"), ("Bob", "bob@customer.example")]},
    "quoted local parts": {"to": [("John", '"john smith"@customer.example'), ("", '"a@b.example"@customer.example')]},
    # Threading and loop guards.
    "no threading, no guards": {
        "in_reply_to": None, "references": [], "auto_submitted": None, "bulk": False, "loop": "",
    },
    "guards without bulk": {"auto_submitted": "auto-generated", "bulk": False},
    "long references": {
        "references": [LONG_ID, *(f"<r{i}.{'z' * 20}@customer.example>" for i in range(6))],
        "in_reply_to": LONG_ID,
    },
    "parent thread index": {"parent_thread_index": ROOT_INDEX},
    "attachments": {"attachments": [
        OutgoingAttachment("invoice.pdf", "application/pdf", b"%PDF-1.4\x00\xff" * 40),
        OutgoingAttachment("Übersicht März.txt", "text/plain", "grüße\n".encode()),
        OutgoingAttachment('a "quoted" name.bin', "NOT A TYPE", b"x")]},
    "attachments, text only": {"html": None, "attachments": [OutgoingAttachment("a.txt", "text/plain", b"a\n")]},
    "cc and reply-to": {"cc": [("Bob Smith", "bob@customer.example"), ("", "carol@customer.example")],
                        "reply_to": [("ACME Support", "support+42.abcdefghijklmnop@example.com")]},
    "broken parent thread index": {"parent_thread_index": "not base64!"},
    "other time zone": {"date": datetime(2026, 3, 1, 23, 59, 59, tzinfo=timezone(timedelta(hours=-5)))},
}


@pytest.mark.usefixtures("fixed_boundary")
@pytest.mark.parametrize("overrides", CASES.values(), ids=CASES.keys())
def test_the_bytes_are_the_email_packages(overrides: dict[str, object]) -> None:
    out = outgoing(**overrides)
    assert compose_bytes(out) == compose(out).as_bytes()


@pytest.mark.parametrize(
    "addr", ['"john smith"@customer.example', '"a@good.example"@evil.example', '"a\\"b"@customer.example'])
def test_a_quoted_local_part_is_sent_to_the_mailbox_it_names(addr: str) -> None:
    """The To header holds a valid addr-spec, which reads back as the very same address."""
    for raw in (compose_bytes(outgoing(to=[("John", addr)])), compose(outgoing(to=[("", addr)])).as_bytes()):
        mail = email.message_from_bytes(raw, policy=default)
        assert [a.addr_spec for a in mail["To"].addresses] == [addr]
        assert mail["To"].defects == ()


@pytest.mark.usefixtures("fixed_boundary")
def test_the_cases_reach_every_encoding_and_both_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    """So that the equality above covers each way compose() writes a mail."""
    folded: list[str] = []
    by_email_package = compose_module._folded_by_email_package

    def spy(name: str, value: str | list[Address]) -> str:
        folded.append("text" if isinstance(value, str) else "addresses")
        return by_email_package(name, value)

    monkeypatch.setattr(compose_module, "_folded_by_email_package", spy)
    written = b"\r\n".join(compose_bytes(outgoing(**overrides)) for overrides in CASES.values())
    for encoding in (b"7bit", b"quoted-printable", b"base64"):
        assert b"Content-Transfer-Encoding: " + encoding + b"\r\n" in written
    assert {"text", "addresses"} <= set(folded)
    assert b"MIME-Version: 1.0\r\nContent-Type: multipart/alternative;" in written
    assert b"MIME-Version: 1.0\r\nContent-Type: text/plain" in written


def test_a_body_holding_the_first_boundary_gets_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = "0f" * 16, "e1" * 16
    out = outgoing(text=f"--=_{first}\n")

    def written(render: Callable[[Outgoing], bytes]) -> bytes:
        tokens = iter([first, second])
        monkeypatch.setattr(secrets, "token_hex", lambda nbytes: next(tokens))
        return render(out)

    raw = written(compose_bytes)
    assert raw == written(lambda same: compose(same).as_bytes())
    assert f'boundary="=_{second}"'.encode() in raw


def test_the_boundary_is_new_for_every_mail() -> None:
    boundaries = {compose_bytes(outgoing()).split(b'boundary="', 1)[1].split(b'"', 1)[0] for _ in range(3)}
    assert len(boundaries) == 3


def test_no_message_object_and_no_generator_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the email package was asked to build or write the mail")

    monkeypatch.setattr(EmailMessage, "__init__", refuse)
    monkeypatch.setattr(email.generator.Generator, "flatten", refuse)
    assert compose_bytes(outgoing()).startswith(b"From: ACME Support <support@example.com>\r\n")
    assert compose_bytes(outgoing(html=None)).endswith(ACK_TEXT.replace("\n", "\r\n").encode())


@pytest.mark.parametrize(
    "overrides",
    [
        {"to": []},
        {"to": [("x", "no-at-sign")]},
        {"to": [("Alice", "alice@customer.example"), ("x", "@customer.example")]},
        {"to": [("x", "local@")]},
        {"from_address": "support"},
        {"text": "Caf\udce9\n"},  # a body must encode as UTF-8
    ],
    ids=["no recipient", "no at sign", "no local part", "no domain", "bad sender", "surrogate in the body"],
)
def test_what_compose_refuses_compose_bytes_refuses_alike(overrides: dict[str, object]) -> None:
    out = outgoing(**overrides)
    with pytest.raises(ValueError) as composed:
        compose(out)
    with pytest.raises(ValueError) as written:
        compose_bytes(out)
    assert type(written.value) is type(composed.value) and str(written.value) == str(composed.value)


@pytest.mark.parametrize("html", [None, "<p>Grüße, Zoë</p>"], ids=["text only", "with html"])
def test_the_bytes_read_back(html: str | None) -> None:
    subject = "[#7] Ihre Anfrage: Größe " + "sehr lang " * 10
    text = "Grüße, Zoë!\r\n\nZeile zwei ohne Umbruch"
    to = [('Zoë "Z" Müller, Ph.D.', "zoe@customer.example"), ("", "cc@customer.example")]
    mail = email.message_from_bytes(compose_bytes(outgoing(subject=subject, text=text, html=html, to=to)),
                                    policy=default)

    assert mail["Subject"] == subject.strip()
    assert [(a.display_name, a.addr_spec) for a in mail["To"].addresses] == to
    assert not mail.defects
    plain = mail.get_body(("plain",))
    assert plain.get_content().replace("\r\n", "\n") == "Grüße, Zoë!\n\nZeile zwei ohne Umbruch\n"
    if html is None:
        assert mail.get_content_type() == "text/plain" and not mail.is_multipart()
    else:
        assert [part.get_content_type() for part in mail.iter_parts()] == ["text/plain", "text/html"]
        assert mail.get_body(("html",)).get_content().replace("\r\n", "\n") == html + "\n"


def test_attachments_arrive_whole_with_their_names() -> None:
    files = CASES["attachments"]["attachments"]
    parsed = parse(compose_bytes(outgoing(attachments=files)))
    assert [(a.filename, a.content_type, a.content) for a in parsed.attachments] == [
        ("invoice.pdf", "application/pdf", files[0].content),
        ("Übersicht März.txt", "text/plain", files[1].content),
        ('a "quoted" name.bin', "application/octet-stream", b"x")]
    assert parsed.text == outgoing().text.strip()
