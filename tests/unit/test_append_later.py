"""append_later: rows (and their children) written together before the commit, seen by queries, dropped on
rollback."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from maildesk.desk import tickets
from maildesk.models import (
    Attachment, Children, Message, ThreadKey, Ticket, TicketEvent, append_later, appended, appended_writes,
)
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


def _message_row(ticket_id: int, message_id: str) -> dict[str, Any]:
    return dict(ticket_id=ticket_id, inbound_id=None, direction="in", kind="customer", message_id=message_id,
                in_reply_to=[], references=[], from_address="alice@customer.example", from_name="Alice",
                to=[], cc=[], reply_to=[], subject="s", date=None, body_text="b", body_html=None, new_text="b",
                classification="normal", classification_reason="test", defects=[], created_at=BASE_DATE)


def _attachments(*names: str) -> Children:
    return Children(Attachment, column="message_id", rows=[_attachment(n) for n in names], parent_key="message_id")


def _attachment(name: str) -> dict[str, Any]:
    content = name.encode()
    return dict(filename=name, safe_filename=name, content_type="text/plain", content_id=None, inline=False,
                size=len(content), sha256=hashlib.sha256(content).hexdigest(), content=content)


def test_children_get_their_own_rows_id_and_rows_keep_their_order(desk: Desk) -> None:
    ticket_id = desk.ingest(make_mail()).ticket_id
    with desk.db.session() as session:
        for n in range(4):
            files = _attachments(*(f"m{n}-{k}.txt" for k in range(n % 3)))  # none, one, two, none
            append_later(session, Message, _message_row(ticket_id, f"<later-{n}@test>"), files)
    with desk.db.session() as session:
        rows = session.execute(select(Message.id, Message.message_id).where(Message.message_id.like("<later-%"))
                               .order_by(Message.id)).all()
        assert [m for _, m in rows] == [f"<later-{n}@test>" for n in range(4)]
        owner = {message_id: n for n, (_, message_id) in enumerate(rows)}
        attached = session.execute(select(Attachment.filename, Message.message_id)
                                   .join(Message, Attachment.message_id == Message.id)).all()
    assert sorted(attached) == sorted((f"m{n}-{k}.txt", f"<later-{n}@test>") for n in range(4) for k in range(n % 3))
    assert all(name.startswith(f"m{owner[message_id]}-") for name, message_id in attached)


def test_a_query_on_the_children_finds_them(desk: Desk) -> None:
    ticket_id = desk.ingest(make_mail()).ticket_id
    with desk.db.session() as session:
        append_later(session, Message, _message_row(ticket_id, "<later@test>"),
                     _attachments("a.txt"))
        assert session.scalar(select(Attachment.filename).where(Attachment.filename == "a.txt")) == "a.txt"
        assert appended(session, Message) == []


def test_a_rollback_drops_the_children_too(desk: Desk) -> None:
    ticket_id = desk.ingest(make_mail()).ticket_id
    with Session(desk.db.engine) as session:
        with session.begin():
            append_later(session, Message, _message_row(ticket_id, "<dropped@test>"),
                         _attachments("dropped.txt"))
            session.rollback()
        with session.begin():
            append_later(session, Message, _message_row(ticket_id, "<kept@test>"))
    with desk.db.session() as session:
        assert session.scalar(select(func.count(Attachment.id)).where(Attachment.filename == "dropped.txt")) == 0
        assert session.scalar(select(func.count(Message.id)).where(Message.message_id == "<dropped@test>")) == 0
        assert session.scalar(select(func.count(Message.id)).where(Message.message_id == "<kept@test>")) == 1


def test_rows_whose_write_fails_count_as_changed(desk: Desk) -> None:
    """What was read while they waited may be out of date: ``appended_writes`` must say so."""
    with desk.db.session() as session:
        before = appended_writes(session)
        with pytest.raises(IntegrityError), session.begin_nested():
            append_later(session, ThreadKey, {"message_id": "<k@test>", "ticket_id": 999999})  # no such ticket
        assert appended(session, ThreadKey) == []
        assert appended_writes(session) > before
