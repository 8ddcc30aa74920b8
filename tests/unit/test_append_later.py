"""append_later: history rows written together before the commit, seen by queries, dropped on rollback."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from maildesk.desk import tickets
from maildesk.models import Ticket, TicketEvent
from tests.helpers import BASE_DATE, Desk, make_mail


def _events(desk: Desk, ticket_id: int) -> list[str]:
    with desk.db.session() as session:
        return list(session.scalars(select(TicketEvent.type).where(TicketEvent.ticket_id == ticket_id)
                                    .order_by(TicketEvent.id)))


def test_events_are_written_at_commit(desk: Desk) -> None:
    ticket_id = desk.ingest(make_mail()).ticket_id
    with desk.db.session() as session:
        ticket = session.get(Ticket, ticket_id)
        tickets.record_event(session, ticket, "tagged", now=BASE_DATE, reason="test")
        tickets.record_event(session, ticket, "noted", now=BASE_DATE, reason="test")
    assert _events(desk, ticket_id)[-2:] == ["tagged", "noted"]


def test_a_query_in_the_same_transaction_finds_them(desk: Desk) -> None:
    ticket_id = desk.ingest(make_mail()).ticket_id
    with desk.db.session() as session:
        ticket = session.get(Ticket, ticket_id)
        before = session.scalar(select(func.count(TicketEvent.id)))
        tickets.record_event(session, ticket, "tagged", now=BASE_DATE, reason="test")
        assert session.scalar(select(func.count(TicketEvent.id))) == before + 1


def test_a_rollback_drops_them(desk: Desk) -> None:
    ticket_id = desk.ingest(make_mail()).ticket_id
    with Session(desk.db.engine) as session:  # one session, two transactions
        with session.begin():
            tickets.record_event(session, session.get(Ticket, ticket_id), "tagged", now=BASE_DATE, reason="test")
            session.rollback()
        with session.begin():
            tickets.record_event(session, session.get(Ticket, ticket_id), "noted", now=BASE_DATE, reason="test")
    events = _events(desk, ticket_id)
    assert "tagged" not in events and events[-1] == "noted"
