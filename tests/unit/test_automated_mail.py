"""Automated mail meeting the desk: out-of-office replies, loops and alerts are
stored where they belong, never reopen a ticket, never open one for nothing,
and the spool row says what became of each."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from maildesk import spool
from maildesk.models import Inbound, Outbox, Ticket
from tests.helpers import BASE_DATE, Desk, make_mail

OUT_OF_OFFICE = {"Auto-Submitted": "auto-replied", "X-Autoreply": "yes"}


def ack_id(desk: Desk, ticket_id: int) -> str:
    with desk.db.session() as session:
        return session.scalars(select(Outbox.message_id).where(Outbox.ticket_id == ticket_id)).one()


def disposition(desk: Desk, inbound_id: int) -> str | None:
    with desk.db.session() as session:
        return session.get(Inbound, inbound_id).disposition  # type: ignore[union-attr]


def set_status(desk: Desk, ticket_id: int, status: str, **times: object) -> None:
    with desk.db.session() as session:
        session.execute(update(Ticket).where(Ticket.id == ticket_id).values(status=status, **times))


def test_an_out_of_office_answering_no_ticket_opens_none_and_the_spool_says_why(desk: Desk) -> None:
    outcome = desk.ingest(make_mail(subject="Automatic reply: Newsletter", headers=OUT_OF_OFFICE), notify=True)

    assert outcome.state == spool.DONE and outcome.ticket_id is None
    assert desk.ticket_count() == 0 and desk.message_count() == 0
    why = disposition(desk, outcome.inbound_id) or ""
    assert why.startswith("not on any ticket: auto_reply") and "Auto-Submitted" in why
    assert [r.disposition for r in spool.list_inbound(desk.db)] == [why]  # what `inbound list` shows


def test_an_out_of_office_to_a_solved_ticket_is_stored_without_reopening_it(desk: Desk) -> None:
    first = desk.ingest(make_mail(), notify=True)
    set_status(desk, first.ticket_id, "solved", solved_at=BASE_DATE)

    ooo = desk.ingest(make_mail(subject="Automatic reply", in_reply_to=ack_id(desk, first.ticket_id),
                                headers=OUT_OF_OFFICE), notify=True)

    assert ooo.ticket_id == first.ticket_id and not ooo.created
    ticket = desk.ticket(first.ticket_id)
    assert ticket["status"] == "solved"
    assert [(m["direction"], m["kind"]) for m in ticket["messages"]] == [("in", "customer"), ("out", "auto"),
                                                                        ("in", "auto")]
    assert disposition(desk, ooo.inbound_id) == f"added to ticket #{first.ticket_id} (in-reply-to)"


def test_an_out_of_office_to_a_ticket_closed_long_ago_is_filed_there_and_opens_nothing(desk: Desk) -> None:
    first = desk.ingest(make_mail(), notify=True)
    set_status(desk, first.ticket_id, "closed", closed_at=BASE_DATE - timedelta(days=400))

    ooo = desk.ingest(make_mail(subject="Automatic reply", in_reply_to=ack_id(desk, first.ticket_id),
                                headers=OUT_OF_OFFICE), notify=True, now=BASE_DATE)

    assert ooo.ticket_id == first.ticket_id and desk.ticket_count() == 1
    assert desk.ticket(first.ticket_id)["status"] == "closed"


def test_our_own_mail_looping_back_onto_its_ticket_is_stored_and_answered_by_nothing(desk: Desk) -> None:
    first = desk.ingest(make_mail(), notify=True)
    set_status(desk, first.ticket_id, "solved", solved_at=BASE_DATE)
    # A forwarding rule sends our acknowledgement back to us under a new Message-ID.
    looped = desk.ingest(make_mail(sender="support@example.com", subject="Fwd: our ack",
                                   in_reply_to=ack_id(desk, first.ticket_id),
                                   headers={"X-Loop": "support@example.com"}), notify=True)

    assert looped.ticket_id == first.ticket_id
    ticket = desk.ticket(first.ticket_id)
    assert ticket["status"] == "solved"
    assert ticket["messages"][-1]["classification"]["class"] == "loop"
    with desk.db.session() as session:
        assert session.scalars(select(Outbox.kind)).all() == ["ack"]  # the first mail's, nothing since


def test_loop_mail_answering_no_ticket_is_dropped_with_its_reason(desk: Desk) -> None:
    outcome = desk.ingest(make_mail(headers={"X-Loop": "support@example.com"}), notify=True)
    assert outcome.ticket_id is None and desk.ticket_count() == 0
    assert (disposition(desk, outcome.inbound_id) or "").startswith("not on any ticket: loop")


def test_an_alert_from_a_monitoring_system_opens_a_ticket_but_gets_no_acknowledgement(desk: Desk) -> None:
    outcome = desk.ingest(make_mail(sender="nagios@monitor.example", subject="PROBLEM: disk full",
                                    headers={"Auto-Submitted": "auto-generated"}), notify=True)
    assert outcome.created
    assert desk.ticket(outcome.ticket_id)["messages"][0]["classification"]["class"] == "auto_generated"
    with desk.db.session() as session:
        assert session.scalars(select(Outbox)).all() == []
