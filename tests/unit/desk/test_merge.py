"""Merging two tickets of one conversation: what moves, what stays, what is refused."""

from __future__ import annotations

from sqlalchemy import update

from maildesk.desk import merge
from maildesk.models import Ticket
from tests.helpers import BASE_DATE, Desk, make_mail


def test_the_survivor_takes_over_what_the_merged_ticket_followed_up(desk: Desk) -> None:
    old = desk.ingest(make_mail(message_id="<old@c.example>", subject="Q"))
    younger = desk.ingest(make_mail(message_id="<y@c.example>", subject="Q again"))
    older = desk.ingest(make_mail(message_id="<o@c.example>", subject="Q"))
    with desk.db.session() as session:
        session.execute(update(Ticket).where(Ticket.id == younger.ticket_id).values(linked_ticket_id=old.ticket_id))
    with desk.db.session() as session:
        survivor, absorbed = session.get(Ticket, younger.ticket_id), session.get(Ticket, older.ticket_id)
        assert survivor is not None and absorbed is not None
        merge.merge_into(session, survivor, absorbed, actor="alice@customer.example", now=BASE_DATE, reason="test")

    kept = desk.ticket(younger.ticket_id)
    assert kept["linked_ticket_id"] == old.ticket_id
    assert sorted(m["message_id"] for m in kept["messages"]) == ["<o@c.example>", "<y@c.example>"]
    assert [p["address"] for p in kept["participants"]] == ["alice@customer.example"]  # not twice
    gone = desk.ticket(older.ticket_id)
    assert (gone["status"], gone["linked_ticket_id"], gone["participants"]) == ("merged", younger.ticket_id, [])


def test_only_the_requester_of_every_ticket_may_merge_them(desk: Desk) -> None:
    alices = [desk.ingest(make_mail(subject=f"Q{n}")).ticket_id for n in (1, 2)]
    bobs = desk.ingest(make_mail(sender="bob@other.example")).ticket_id
    with desk.db.session() as session:
        tickets = [session.get(Ticket, i) for i in (*alices, bobs)]
        assert [t.id for t in merge.mergeable(tickets, "Alice@Customer.example")] == alices  # type: ignore[union-attr]
        assert merge.mergeable(tickets, "mallory@evil.example") == []  # type: ignore[arg-type]
