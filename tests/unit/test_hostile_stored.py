"""Hostile mail stored through the desk (issue #10), on SQLite and PostgreSQL."""

from __future__ import annotations

from tests.helpers import Desk
from tests.unit.mail.test_parse_hostile import nested_multiparts

CONTENT = (b"From: Alice <alice@customer.example>\nTo: support@example.com\nSubject: No id here\n"
           b"Date: Mon, 2 Nov 2026 09:30:00 +0000\n\nMy printer is on fire.\n")


def test_a_redelivery_without_message_id_opens_no_second_ticket(desk: Desk) -> None:
    first = desk.ingest(b"Received: from mx1.example by mx2.example; Mon, 2 Nov 2026 09:30:01 +0000\n" + CONTENT)
    again = desk.ingest(
        b"Received: from mx2.example by mx3.example; Mon, 2 Nov 2026 09:35:00 +0000\n"
        b"Received: from mx1.example by mx2.example; Mon, 2 Nov 2026 09:30:01 +0000\n" + CONTENT
    )
    assert first.created and not again.created
    assert again.ticket_id == first.ticket_id
    assert desk.ticket_count() == 1 and desk.message_count() == 1


def test_several_from_addresses_make_the_sender_the_requester(desk: Desk) -> None:
    raw = CONTENT.replace(b"From: Alice <alice@customer.example>\n",
                          b"From: mallory@x.example, Alice <alice@customer.example>\nSender: alice@customer.example\n")
    outcome = desk.ingest(raw.replace(b"\n\n", b"\nMessage-ID: <two-from@customer.example>\n\n", 1))
    ticket = desk.ticket(outcome.ticket_id)
    assert ticket["requester"] == "alice@customer.example"
    [message] = ticket["messages"]
    assert "From names 2 addresses; took 'alice@customer.example' from Sender" in message["defects"]


def test_a_quoted_local_part_is_stored_as_one_address(desk: Desk) -> None:
    raw = CONTENT.replace(b"<alice@customer.example>", b'<"a@good.example"@customer.example>')
    outcome = desk.ingest(raw.replace(b"\n\n", b"\nMessage-ID: <quoted@customer.example>\n\n", 1))
    assert desk.ticket(outcome.ticket_id)["requester"] == '"a@good.example"@customer.example'


def test_a_mail_nested_a_thousand_deep_opens_a_ticket_with_its_subject_and_sender(desk: Desk) -> None:
    outcome = desk.ingest(nested_multiparts(1000))
    ticket = desk.ticket(outcome.ticket_id)
    assert (ticket["subject"], ticket["requester"]) == ("Deep", "alice@customer.example")
    [message] = ticket["messages"]
    assert message["message_id"] == "<deep@customer.example>"
    assert message["attachments"][0]["content_type"] == "application/octet-stream"
