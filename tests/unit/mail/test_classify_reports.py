"""Complaints (ARF) and more shapes of bounce (issue #16), from hand-written mails."""

from __future__ import annotations

import base64

import pytest

from maildesk.mail.classify import BOUNCE, COMPLAINT, NORMAL, classify
from maildesk.mail.parse import parse

OWN = ("desk.example.com",)

ARF = b"""From: Abuse Desk <abuse@bigmail.example>
To: postmaster@example.com
Subject: Complaint about message from 192.0.2.7
Message-ID: <arf-77@bigmail.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="arf"

--arf
Content-Type: text/plain

This is an email abuse report for an email message received from IP 192.0.2.7.
--arf
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: BigMail-FBL/1.0
Version: 1
Original-Rcpt-To: <customer@bigmail.example>

--arf
Content-Type: text/rfc822-headers

From: ACME Support <support@example.com>
To: customer@bigmail.example
Subject: [#12] We have received your request
Message-ID: <ack-12@desk.example.com>

--arf--
"""


def verdict(raw: bytes):
    parsed = parse(raw)
    return classify(parsed.message, parsed.sender.address, own_domains=OWN)


def test_an_arf_report_is_a_complaint_about_our_mail() -> None:
    found = verdict(ARF)
    assert found.kind == COMPLAINT
    assert found.reason == "ARF feedback report (Feedback-Type: abuse)"
    assert found.bounced_message_ids == ("<ack-12@desk.example.com>",)
    # A person who forwards such a report writes to us; the report is not theirs.
    forwarded = (b"From: Budi <budi@pelanggan.example>\nSubject: Fwd: Complaint\nMIME-Version: 1.0\n"
                 b"Content-Type: multipart/mixed; boundary=fw\n\n--fw\nContent-Type: text/plain\n\nWhy did I get this?\n"
                 b"--fw\nContent-Type: message/rfc822\n\n" + ARF + b"\n--fw--\n")
    assert verdict(forwarded).kind == NORMAL


def encoded(subject: str) -> bytes:
    return b"=?utf-8?b?" + base64.b64encode(subject.encode()) + b"?="


@pytest.mark.parametrize(
    "subject",
    [
        "【配信不能】メールを送信できませんでした",
        "配信エラーのお知らせ",
        "系统退信",
        "Недоставленное сообщение",
        "Pesan tidak terkirim: Printer",
        "No se pudo entregar: Printer",
        "Não foi possível entregar a mensagem",
        "Échec de la remise du message",
        "Benachrichtigung zum Übermittlungsstatus (Fehler)",
    ],
)
def test_a_mail_system_bounce_subject_in_other_languages_is_a_bounce(subject: str) -> None:
    body = b"\n\nYour message to kim@gogaek.example could not be delivered.\n"
    for sender in (b"From: postmaster@mx.example", b"From: <>", b"From: MAILER-DAEMON"):
        found = verdict(sender + b"\nSubject: " + encoded(subject) + b"\nMessage-ID: <b1@mx.example>" + body)
        assert found.kind == BOUNCE, sender
        assert "bounce subject" in found.reason or "failed recipients" in found.reason
    # A person who forwards the bounce only writes about it.
    person = b"From: Budi <budi@pelanggan.example>\nSubject: " + encoded(f"Fwd: {subject}") + body
    assert verdict(person).kind == NORMAL


def test_a_delivery_status_part_anywhere_makes_a_bounce() -> None:
    raw = (b"From: Mail Gateway <gateway@corp.example>\nSubject: Notification\nMessage-ID: <n1@corp.example>\n"
           b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n"
           b"--b\nContent-Type: text/plain\n\nSee the report.\n"
           b"--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; gw.corp.example\n\n"
           b"Final-Recipient: rfc822; nobody@corp.example\nAction: failed\nStatus: 5.1.1\n"
           b"--b\nContent-Type: text/rfc822-headers\n\nMessage-ID: <ack-9@desk.example.com>\n--b--\n")
    found = verdict(raw)
    assert found.kind == BOUNCE
    assert found.reason == "DSN (failed in a message/delivery-status part)"
    assert found.bounced_message_ids == ("<ack-9@desk.example.com>",)
    assert found.permanent
