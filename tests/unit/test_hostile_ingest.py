"""Hostile mail that arrives without an SMTP envelope (ingest, IMAP): the same promises as
through the listener (tests/integration/test_hostile_mail.py), on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import select

from maildesk import spool
from maildesk.models import Outbox
from tests.helpers import Desk, make_mail


def outbox(desk: Desk) -> list[Outbox]:
    with desk.db.session() as session:
        rows = list(session.scalars(select(Outbox).order_by(Outbox.id)))
        session.expunge_all()
        return rows


def test_return_path_null_gets_no_acknowledgement(desk: Desk) -> None:
    outcome = desk.ingest(b"Return-Path: <>\n" + make_mail(), notify=True)

    assert outcome.created
    [ack] = outbox(desk)
    assert ack.status == "suppressed" and "Return-Path: <>" in ack.reason


def test_a_mail_that_passed_over_100_relays_is_a_loop_and_never_answered(desk: Desk) -> None:
    hops = b"".join(b"Received: from r%d.example by r%d.example; Mon, 2 Nov 2026 09:00:00 +0000\n" % (n, n + 1)
                    for n in range(101))
    outcome = desk.ingest(hops + make_mail(), notify=True)

    assert outcome.state == spool.DONE and outcome.ticket_id is None
    assert outcome.detail.startswith("not on any ticket: loop (101 Received headers")
    assert outbox(desk) == []


def test_100_relays_are_still_a_mail(desk: Desk) -> None:
    hops = b"".join(b"Received: from r%d.example by r%d.example; Mon, 2 Nov 2026 09:00:00 +0000\n" % (n, n + 1)
                    for n in range(100))
    assert desk.ingest(hops + make_mail(), notify=True).created
    assert [row.status for row in outbox(desk)] == ["queued"]


def test_a_strangers_auto_reply_naming_our_mail_is_filed_and_changes_nothing(desk: Desk) -> None:
    desk.ingest(make_mail(subject="Help"), notify=True)
    [ack] = outbox(desk)
    auto = make_mail(sender="alice.forward@elsewhere.example", subject="Automatic reply: Help",
                     in_reply_to=ack.message_id, cc="eve@evil.example",
                     headers={"Auto-Submitted": "auto-replied"})
    outcome = desk.ingest(auto, notify=True)

    assert outcome.ticket_id == ack.ticket_id and not outcome.created
    assert outcome.detail == f"added to ticket #{ack.ticket_id} (non-participant)"
    ticket = desk.ticket(ack.ticket_id)
    assert ticket["status"] == "new"
    assert {p["address"] for p in ticket["participants"]} == {"alice@customer.example"}
    assert len(outbox(desk)) == 1
