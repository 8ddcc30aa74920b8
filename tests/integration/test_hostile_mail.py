"""Hostile mail through the real listener, then processed: what an attacker or a careless
mail server sends to a public support address must neither take over a ticket nor make
maildesk answer a robot, fail a message, or mail an address nobody wrote.

Each test runs on SQLite and, where MAILDESK_TEST_DATABASE_URL is set (CI), on PostgreSQL.
See docs/guarantees.md for the promises these tests hold maildesk to.
"""

from __future__ import annotations

import base64
import smtplib

import pytest
from sqlalchemy import select, update

from maildesk import spool
from maildesk.db import Database
from maildesk.mail.compose import new_message_id
from maildesk.models import Outbox, Ticket
from maildesk.process import process_queued
from tests.helpers import Desk, make_mail
from tests.integration.conftest import RunningListener

pytestmark = pytest.mark.integration

ALICE = "alice@customer.example"
MALLORY = "mallory@evil.example"


def deliver(listener: RunningListener, raw: bytes, *, mail_from: str = ALICE,
            to: str = "support@example.com") -> tuple[int, bytes]:
    """Send ``raw`` over SMTP and process what was spooled; the reply to DATA."""
    with smtplib.SMTP(listener.host, listener.port) as client:
        client.ehlo("client.example")
        client.mail(mail_from)
        client.rcpt(to)
        reply = client.data(raw.replace(b"\n", b"\r\n"))
    process_queued(listener.db, listener.config)
    return reply


def outbox(db: Database) -> list[Outbox]:
    with db.session() as session:
        rows = list(session.scalars(select(Outbox).order_by(Outbox.id)))
        session.expunge_all()
        return rows


def only_ticket_of(desk: Desk, outcome_detail: str) -> dict:
    ticket_id = int(outcome_detail.rsplit("#", 1)[1].split()[0])
    return desk.ticket(ticket_id)


def latest_row(db: Database) -> spool.Inbound:
    return spool.list_inbound(db)[0]


# -- 1. nobody takes over a ticket by naming one of our Message-IDs --------------------------------


def test_a_forged_in_reply_to_our_acknowledgement_opens_a_linked_ticket(
        listener: RunningListener, db: Database, desk: Desk) -> None:
    deliver(listener, make_mail(subject="My invoice"))
    [ack] = outbox(db)
    with db.session() as session:  # the ticket was solved: a hijacker would like to reopen it
        session.execute(update(Ticket).values(status="solved"))

    forged = make_mail(sender=f"Mallory <{MALLORY}>", subject="Re: My invoice", in_reply_to=ack.message_id,
                       references=ack.message_id, cc="Eve <eve@evil.example>")
    assert deliver(listener, forged, mail_from=MALLORY)[0] == 250

    original = desk.ticket(ack.ticket_id)
    assert original["status"] == "solved"
    assert {p["address"] for p in original["participants"]} == {ALICE}
    assert [m["from"]["address"] for m in original["messages"] if m["direction"] == "in"] == [ALICE]
    row = latest_row(db)
    assert row.state == spool.DONE and row.ticket_id != ack.ticket_id
    new = desk.ticket(row.ticket_id)
    assert new["requester"] == MALLORY and new["linked_ticket_id"] == ack.ticket_id
    assert {p["address"] for p in new["participants"]} == {MALLORY, "eve@evil.example"}
    [created] = [e for e in new["events"] if e["type"] == "created"]
    assert ack.message_id in created["reason"] and "not a participant" in created["reason"]
    assert "linked" in [e["type"] for e in original["events"]]


def test_a_participants_colleague_in_cc_may_answer(listener: RunningListener, db: Database, desk: Desk) -> None:
    deliver(listener, make_mail(subject="Outage", cc="Bob <bob@customer.example>"))
    [ack] = outbox(db)
    reply = make_mail(sender="bob@customer.example", subject="Re: Outage", in_reply_to=ack.message_id)
    deliver(listener, reply, mail_from="bob@customer.example")

    assert latest_row(db).ticket_id == ack.ticket_id
    assert len(desk.ticket(ack.ticket_id)["messages"]) == 3  # alice's, the ack, bob's


def test_our_message_ids_cannot_be_guessed() -> None:
    """At least 128 random bits each; make_msgid's are a time, a pid and 64 bits of random.random."""
    ids = [new_message_id("desk.example.com") for _ in range(200)]
    assert len(set(ids)) == len(ids)
    for message_id in ids:
        local, _, domain = message_id.strip("<>").partition("@")
        assert domain == "desk.example.com"
        assert len(base64.urlsafe_b64decode(local + "=" * (-len(local) % 4))) * 8 >= 128


# -- 2. a tag no ticket can have is no tag -----------------------------------------------------------


def test_a_tag_beyond_any_ticket_id_makes_a_plain_new_ticket(
        listener: RunningListener, db: Database, desk: Desk) -> None:
    deliver(listener, make_mail(subject="Re: [#999999999999999999] give me everything"))

    row = latest_row(db)
    assert row.state == spool.DONE, row.error
    ticket = desk.ticket(row.ticket_id)
    assert ticket["linked_ticket_id"] is None and "[#999999999999999999]" in ticket["subject"]


# -- 3. a null sender is never answered; a loop is refused -------------------------------------------


def test_a_null_envelope_sender_opens_a_ticket_but_gets_no_acknowledgement(
        listener: RunningListener, db: Database, desk: Desk) -> None:
    assert deliver(listener, make_mail(subject="From a person, sent by a system"), mail_from="")[0] == 250

    row = latest_row(db)
    assert desk.ticket(row.ticket_id)["requester"] == ALICE
    [ack] = outbox(db)
    assert ack.status == "suppressed" and "MAIL FROM:<>" in ack.reason


def test_a_mail_that_passed_over_100_relays_is_refused_554(listener: RunningListener, db: Database) -> None:
    hops = b"".join(b"Received: from relay%d.example by relay%d.example; Mon, 2 Nov 2026 09:00:00 +0000\n"
                    % (n, n + 1) for n in range(101))
    with smtplib.SMTP(listener.host, listener.port) as client:
        code, reply = client.ehlo("client.example")
        client.mail(ALICE)
        client.rcpt("support@example.com")
        code, reply = client.data((hops + make_mail()).replace(b"\n", b"\r\n"))
    assert (code, reply[:5]) == (554, b"5.4.0")
    assert spool.list_inbound(db) == []


# -- 4. who wrote it ---------------------------------------------------------------------------------


def test_no_from_and_no_sender_takes_the_envelope_sender(
        listener: RunningListener, db: Database, desk: Desk) -> None:
    raw = b"\n".join(line for line in make_mail(subject="who am I").split(b"\n") if not line.startswith(b"From:"))
    deliver(listener, raw, mail_from="carol@customer.example")

    ticket = desk.ticket(latest_row(db).ticket_id)
    assert ticket["requester"] == "carol@customer.example"
    assert any("envelope" in d for d in ticket["messages"][0]["defects"])
    [ack] = outbox(db)
    assert ack.to == ["carol@customer.example"] and ack.status == "queued"


# -- 5. bounded work per mail ------------------------------------------------------------------------


def test_one_mail_adds_at_most_100_participants(listener: RunningListener, db: Database, desk: Desk) -> None:
    names = ",\n ".join(f"user{n}@many.example" for n in range(5000))
    raw = make_mail().replace(b"To: support@example.com", b"To: support@example.com,\n " + names.encode())
    deliver(listener, raw)

    ticket = desk.ticket(latest_row(db).ticket_id)
    assert len(ticket["participants"]) == 100
    assert sum(e["type"] == "participant_added" for e in ticket["events"]) == 99  # the requester is one
    assert any("5001 addresses" in d for d in ticket["messages"][0]["defects"])


# -- 7. an address that does not parse cleanly is never a recipient ---------------------------------


def test_a_folded_reply_to_smuggling_a_recipient_falls_back_to_from(
        listener: RunningListener, db: Database, desk: Desk) -> None:
    raw = make_mail(headers={}).replace(
        b"Subject:", b"Reply-To: <eve@evil.example\n RCPT TO:<victim@x.example>>\nSubject:")
    deliver(listener, raw)

    [ack] = outbox(db)
    assert ack.to == [ALICE] and ack.status == "queued"
    [event] = [e for e in desk.ticket(ack.ticket_id)["events"] if e["type"] == "reply_to_ignored"]
    assert "not a deliverable address" in event["reason"]


def test_a_clean_reply_to_is_answered(listener: RunningListener, db: Database) -> None:
    deliver(listener, make_mail(headers={"Reply-To": "Alice at home <alice@home.example>"}))
    [ack] = outbox(db)
    assert ack.to == ["alice@home.example"]
