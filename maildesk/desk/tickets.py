"""Apply a message to a ticket: open a ticket, add a message, reopen, log why.

Everything here works inside the caller's session and transaction; nothing
here parses mail or touches the network. Every change writes a TicketEvent
saying who did it and why.

Rows that are only ever appended (messages, attachments, participants,
events) are written with plain INSERT statements, not through the ORM's
unit of work: most of a message's processing time went into the
bookkeeping of objects nobody reads again in that transaction. Messages,
attachments and events wait to be written together before the commit
(``models.append_later``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from maildesk.models import (
    Attachment, Children, Message, Participant, Ticket, TicketEvent, append_later, append_row, append_rows,
)

NEW, OPEN, PENDING, SOLVED, CLOSED = "new", "open", "pending", "solved", "closed"
STATUSES = (NEW, OPEN, PENDING, SOLVED, CLOSED)
MERGED = "merged"
"""Not a status anyone sets: the ticket went into another (see desk/merge.py)."""
SYSTEM = "maildesk"


@dataclass(frozen=True)
class Person:
    address: str
    name: str = ""


@dataclass(frozen=True)
class IncomingMessage:
    """What the desk needs of a parsed inbound mail (built by process.py)."""

    message_id: str
    in_reply_to: list[str]
    references: list[str]
    sender: Person
    to: list[Person]
    cc: list[Person]
    reply_to: list[Person]
    subject: str
    date: datetime | None
    text: str
    html: str | None
    new_text: str
    classification: str
    classification_reason: str
    defects: list[str]
    attachments: list[dict[str, Any]]
    """Each with filename, safe_filename, content_type, content_id, inline, size, sha256, content."""
    thread_index: str | None = None
    """Outlook's Thread-Index header, if the client sent one."""


def record_event(
    session: Session,
    ticket: Ticket,
    type_: str,
    *,
    now: datetime,
    actor: str = SYSTEM,
    reason: str = "",
    **detail: Any,
) -> None:
    append_later(session, TicketEvent,
                 {"ticket_id": ticket.id, "at": now, "actor": actor, "type": type_, "reason": reason, "detail": detail})


def open_ticket(
    session: Session,
    mail: IncomingMessage,
    *,
    subject: str,
    queue: str,
    support_address: str,
    now: datetime,
    linked_to: Ticket | None = None,
    reason: str = "",
) -> Ticket:
    values: dict[str, Any] = dict(
        subject=subject or "(no subject)",
        status=NEW,
        queue=queue,
        priority="normal",
        requester=mail.sender.address,
        requester_name=mail.sender.name,
        support_address=support_address,
        tags=[],
        linked_ticket_id=linked_to.id if linked_to else None,
        thread_index=(mail.thread_index or "")[:255] or None,
        assignee=None,
        created_at=now,
        updated_at=now,
        solved_at=None,
        closed_at=None,
        sla_policy=None,
        spam=False,
    )
    ticket = Ticket(id=append_row(session, Ticket, values), **values)
    # The row is written: the session should track the ticket's changes from here, not INSERT it again.
    make_transient_to_detached(ticket)
    session.add(ticket)
    record_event(
        session,
        ticket,
        "created",
        now=now,
        actor=mail.sender.address or SYSTEM,
        reason=reason or f"new mail {mail.message_id}",
        queue=queue,
        message_id=mail.message_id,
        linked_ticket_id=ticket.linked_ticket_id,
    )
    if linked_to is not None:
        record_event(
            session,
            linked_to,
            "linked",
            now=now,
            reason=f"new ticket #{ticket.id} opened instead: {reason}",
            linked_ticket_id=ticket.id,
        )
    return ticket


def add_message(
    session: Session,
    ticket: Ticket,
    mail: IncomingMessage,
    *,
    inbound_id: int | None,
    kind: str,
    via: str,
    now: datetime,
) -> None:
    """Store ``mail`` on ``ticket``: the message and its attachments are written with the
    transaction's other appended rows (``models.append_later``)."""
    values: dict[str, Any] = dict(
        ticket_id=ticket.id,
        inbound_id=inbound_id,
        direction="in",
        kind=kind,
        message_id=mail.message_id,
        in_reply_to=mail.in_reply_to,
        references=mail.references,
        from_address=mail.sender.address,
        from_name=mail.sender.name,
        to=[_person(p) for p in mail.to],
        cc=[_person(p) for p in mail.cc],
        reply_to=[_person(p) for p in mail.reply_to],
        subject=mail.subject,
        date=mail.date,
        body_text=mail.text,
        body_html=mail.html,
        new_text=mail.new_text,
        classification=mail.classification,
        classification_reason=mail.classification_reason,
        defects=mail.defects,
        created_at=now,
    )
    # Each attachment's message_id column is the message row's id, found by the message's Message-ID.
    append_later(session, Message, values,
                 Children(Attachment, column="message_id", rows=mail.attachments, parent_key="message_id"))
    if ticket.updated_at != now:
        touch(session, ticket, now)
    record_event(
        session,
        ticket,
        "message",
        now=now,
        actor=mail.sender.address or SYSTEM,
        reason=f"{kind} mail joined by {via}",
        message_id=mail.message_id,
        classification=mail.classification,
    )


_TOUCH = update(Ticket.__table__).where(Ticket.__table__.c.id == bindparam("ticket_id")).values(
    updated_at=bindparam("updated_at"))


def touch(session: Session, ticket: Ticket, now: datetime) -> None:
    """Set ``updated_at`` with one plain UPDATE (a reply touches its ticket; the ORM's flush costs more)."""
    session.connection().execute(_TOUCH, {"ticket_id": ticket.id, "updated_at": now})
    set_committed_value(ticket, "updated_at", now)


_PARTICIPANTS_OF = select(Participant.address).where(Participant.ticket_id == bindparam("ticket_id"))


def add_participants(
    session: Session, ticket: Ticket, people: list[tuple[Person, str]], *, now: datetime,
    known: set[str] | None = None,
) -> None:
    """Make each (person, role) a participant of the ticket unless they already are.

    ``known``: the ticket's participants, when the caller knows them (an empty
    set for a ticket opened in this transaction); they are looked up
    otherwise. The ones added here are added to it.
    """
    if known is None:
        known = set(session.connection().execute(_PARTICIPANTS_OF, {"ticket_id": ticket.id}).scalars())
    rows: list[dict[str, str | int]] = []
    for person, role in people:
        address = person.address.lower()
        if not address or address in known:
            continue
        known.add(address)
        rows.append({"ticket_id": ticket.id, "address": address, "name": person.name, "role": role})
        if role != "requester":
            record_event(session, ticket, "participant_added", now=now, reason=f"{role} on a mail", address=address)
    append_rows(session, Participant, rows)


def customer_wrote(session: Session, ticket: Ticket, *, actor: str, now: datetime) -> None:
    """A customer's mail on a waiting, solved or closed ticket puts it back to work (spam stays closed)."""
    if ticket.status in (PENDING, SOLVED, CLOSED) and not ticket.spam:
        old = ticket.status
        ticket.status = OPEN
        ticket.solved_at = None
        ticket.closed_at = None
        reason = "customer replied" if old == PENDING else f"customer replied to a {old} ticket"
        record_event(
            session, ticket, "reopened" if old != PENDING else "status", now=now, actor=actor,
            reason=reason, old=old, new=OPEN,
        )


def set_status(session: Session, ticket: Ticket, status: str, *, actor: str, now: datetime, reason: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
    if status == ticket.status:
        return
    old, ticket.status = ticket.status, status
    ticket.updated_at = now
    if status in (NEW, OPEN, PENDING):  # back at work: no longer solved, nor closed
        ticket.solved_at = ticket.closed_at = None
    if status == SOLVED:
        ticket.solved_at, ticket.closed_at = now, None
    if status == CLOSED:
        ticket.closed_at = now
    record_event(session, ticket, "status", now=now, actor=actor, reason=reason, old=old, new=status)


def _person(person: Person) -> dict[str, str]:
    return {"name": person.name, "address": person.address}
