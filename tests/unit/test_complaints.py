"""An abuse report (ARF) about our mail: filed on the ticket of the mail complained about (its
recipient gets no more automatic mail), never a ticket of its own, never answered; on SQLite
and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import select

from maildesk.models import Outbox
from tests.helpers import Desk, make_mail
from tests.unit.mail.test_classify_reports import ARF


def test_a_complaint_about_our_acknowledgement_is_filed_on_its_ticket(desk: Desk) -> None:
    first = desk.ingest(make_mail(sender="customer@bigmail.example"), notify=True)
    with desk.db.session() as session:
        [ack] = session.scalars(select(Outbox))
        ack_id = ack.message_id
    report = ARF.replace(b"<ack-12@desk.example.com>", ack_id.encode())
    outcome = desk.ingest(report, notify=True)

    assert outcome.ticket_id == first.ticket_id and not outcome.created
    ticket = desk.ticket(first.ticket_id)
    [event] = [e for e in ticket["events"] if e["type"] == "complaint_received"]
    assert ack_id in event["reason"] and event["detail"]["recipients"] == ["customer@bigmail.example"]
    assert ticket["status"] == "new"
    with desk.db.session() as session:
        assert len(list(session.scalars(select(Outbox)))) == 1


def test_a_complaint_about_mail_we_never_sent_opens_no_ticket(desk: Desk) -> None:
    outcome = desk.ingest(ARF, notify=True)
    assert outcome.ticket_id is None and outcome.detail.startswith("not on any ticket: complaint")
    assert desk.ticket_count() == 0


def test_who_complained_gets_no_more_automatic_mail(desk: Desk) -> None:
    desk.ingest(make_mail(sender="customer@bigmail.example"), notify=True)
    with desk.db.session() as session:
        ack_id = session.scalars(select(Outbox.message_id)).one()
    desk.ingest(ARF.replace(b"<ack-12@desk.example.com>", ack_id.encode()), notify=True)

    desk.ingest(make_mail(sender="Customer@BigMail.example", subject="Another question"), notify=True)
    desk.ingest(make_mail(sender="someone@else.example", subject="Unrelated"), notify=True)
    with desk.db.session() as session:
        rows = list(session.scalars(select(Outbox).order_by(Outbox.id)))
        assert [(r.to, r.status) for r in rows[1:]] == [(["customer@bigmail.example"], "suppressed"),
                                                       (["someone@else.example"], "queued")]
        assert "reported our mail as abuse" in rows[1].reason
