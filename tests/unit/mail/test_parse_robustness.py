"""parse() never raises; unusable_reason() tells messages from garbage; line endings."""

import dataclasses
import random
from pathlib import Path

import pytest

from maildesk.mail.parse import ParsedMail, parse, unusable_reason

DATA = Path(__file__).resolve().parents[2] / "data" / "parse"
SAMPLES = sorted(DATA.glob("*.eml"))


def summary(mail: ParsedMail) -> tuple:
    return (
        mail.sender, mail.to, mail.cc, mail.reply_to, mail.subject, mail.date,
        mail.message_id, mail.message_id_synthesized, mail.in_reply_to, mail.references,
        mail.text, mail.html, mail.new_text, mail.attachments, mail.defects, mail.headers,
    )  # fmt: skip


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_crlf_and_bare_lf_parse_the_same_but_for_a_defect(path):
    crlf = path.read_bytes()
    assert b"\r\n" in crlf
    lf = parse(crlf.replace(b"\r\n", b"\n"))
    assert lf.defects[0] == "bare LF line endings, not CRLF"
    assert summary(parse(crlf)) == summary(dataclasses.replace(lf, defects=lf.defects[1:]))


def test_bare_lf_among_crlf_is_a_defect():
    mail = parse(b"From: a@b.example\r\nSubject: mixed\nMessage-ID: <m@b.example>\r\n\r\nhi\n")
    assert mail.defects[0] == "mixed line endings: 2 bare LF among CRLF"
    assert mail.subject == "mixed"


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_samples_are_usable(path):
    assert unusable_reason(path.read_bytes()) is None


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_truncated_samples_never_raise(path):
    raw = path.read_bytes()
    for cut in range(0, len(raw), max(1, len(raw) // 60)):
        mail = parse(raw[:cut])
        assert mail.message_id.startswith("<") and mail.message_id.endswith(">")
        assert isinstance(mail.text, str)


def test_random_bytes_never_raise():
    rng = random.Random(20240305)
    samples = [p.read_bytes() for p in SAMPLES]
    for _ in range(300):
        kind = rng.random()
        if kind < 0.4:
            raw = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 400)))
        else:
            raw = bytearray(rng.choice(samples))
            for _ in range(rng.randrange(1, 30)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            raw = bytes(raw)
        mail = parse(raw)
        assert isinstance(mail, ParsedMail)
        unusable_reason(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00" * 50,
        b"\n\n\n",
        b"Content-Type: multipart/mixed\n\n--x\n",
        b'Content-Type: multipart/mixed; boundary="x"\n\n--x\nContent-Type: message/rfc822\n\n',
        b"From: a@b.c\nContent-Type: text/plain; charset*=bogus''x\n\nhi\n",
        b"From: a@b.c\nContent-Type: application/pdf; name*0*=zz''%ff; name*1=\"x\"\n\n%PDF\n",
        b"From: a@b.c\nContent-Transfer-Encoding: base64\n\n!!!not base64===\n",
        b"From: a@b.c\nContent-Transfer-Encoding: x-uuencode\n\nbegin 644 x\n`\nend\n",
        b"From: =?utf-8?b?\xff?= <\xff@\xfe>\nSubject: =?x?q?\xff?=\n\n\xff\n",
        b"From: a@b.c\nDate: Tue, 5 Mar 99999999999999999999 10:00 +0100\n\n",
        "From: a@b.c\nSubject: str not bytes\n\nhi\n",
        bytearray(b"From: a@b.c\n\nbytearray\n"),
    ],
)
def test_broken_messages_never_raise(raw):
    mail = parse(raw)
    assert mail.message_id.endswith(">")


def test_deep_nesting_does_not_raise():
    depth = 3000
    parts = [f'Content-Type: multipart/mixed; boundary="b{i}"\n\n--b{i}\n' for i in range(depth)]
    raw = ("From: a@b.c\n" + "".join(parts) + "Content-Type: text/plain\n\ndeep\n").encode()
    mail = parse(raw)
    assert mail.defects


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty input"),
        (b"   \n\n", "empty input"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "no header section"),
        (b"Hello,\nplease help me with my order.\n", "no header section"),
        (b"X-Foo: bar\nContent-Type: text/plain\n\nbody\n", "no From/To/Subject/Date/Message-ID"),
        (b"From :MAILER-DAEMON Mon Nov  2 09:00:00 2026\n\nhello\n", "no header section"),  # an mbox line only
    ],
)
def test_unusable_input(raw, reason):
    found = unusable_reason(raw)
    assert found is not None and found.startswith(reason)


@pytest.mark.parametrize(
    "raw",
    [
        b"Subject: only a subject\n\nbody\n",
        b"From MAILER-DAEMON Tue Mar  5 10:00:00 2024\nFrom: a@b.c\n\nmbox line first\n",
        b"Received: from x by y; Tue, 5 Mar 2024 10:00:00 +0100\nMessage-ID: <1@x>\n\n",
        b"Resent-From: a@b.c\n\n",
        b"\r\nTo: a@b.c\r\n\r\nleading blank line",
    ],
)
def test_usable_input(raw):
    assert unusable_reason(raw) is None
