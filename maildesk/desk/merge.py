"""Join tickets that turn out to be one conversation.

Replies can arrive before the mail that links them: C (answering B) opens a
ticket, A opens another, and only when B (answering A) arrives is it plain
that all three are one conversation. B's ids then name two tickets. If the
sender of B is the requester of both, the younger ticket is merged into the
older one: its messages, thread keys, participants, outgoing mail and spool
rows move over, it keeps its own history, and its status becomes ``merged``
with a link to the ticket it went into.

The requester rule is what keeps this safe. Message-IDs are not secret, and
anyone who knows one can reply into a ticket and so become one of its
participants (a cc); only the customer who opened both tickets may have them
joined. Otherwise the message joins the ticket its In-Reply-To names and
that ticket's history says which others it also names, for an agent to judge.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from maildesk.desk.tickets import CLOSED, MERGED, NEW, OPEN, record_event
from maildesk.models import Inbound, Message, Outbox, Participant, ThreadKey, Ticket

_MOVED_WITH_THE_TICKET = (Message, ThreadKey, Outbox, Inbound)


def mergeable(tickets: Iterable[Ticket], sender: str) -> list[Ticket]:
    """The tickets (oldest first) that ``sender`` may have merged: live ones they opened."""
    sender = sender.lower()
    return sorted((t for t in tickets if sender and t.requester == sender and t.status not in (CLOSED, MERGED)),
                  key=lambda t: t.id)


def merge_into(session: Session, survivor: Ticket, absorbed: Ticket, *, actor: str, now: datetime,
               reason: str) -> None:
    """Move everything of ``absorbed`` onto ``survivor``; ``absorbed`` stays as a pointer."""
    for model in _MOVED_WITH_THE_TICKET:
        session.execute(update(model).where(model.ticket_id == absorbed.id).values(ticket_id=survivor.id))
    _move_participants(session, survivor, absorbed)
    survivor.tags = sorted(set(survivor.tags) | set(absorbed.tags))
    if survivor.status == NEW and absorbed.status != NEW:
        survivor.status = OPEN
    survivor.updated_at = now
    if survivor.linked_ticket_id is None and absorbed.linked_ticket_id not in (None, survivor.id):
        survivor.linked_ticket_id = absorbed.linked_ticket_id  # e.g. the old ticket it follows up
    old = absorbed.status
    absorbed.status = MERGED
    absorbed.linked_ticket_id = survivor.id
    absorbed.updated_at = now
    record_event(session, absorbed, "merged", now=now, actor=actor, reason=reason, into=survivor.id, old=old)
    record_event(session, survivor, "merged", now=now, actor=actor, reason=reason, merged=absorbed.id)


def _move_participants(session: Session, survivor: Ticket, absorbed: Ticket) -> None:
    present = set(session.scalars(select(Participant.address).where(Participant.ticket_id == survivor.id)))
    session.execute(delete(Participant).where(Participant.ticket_id == absorbed.id,
                                              Participant.address.in_(present)))
    # Someone who opened the absorbed ticket is a cc of the conversation now, not its requester.
    session.execute(update(Participant).where(Participant.ticket_id == absorbed.id)
                    .values(ticket_id=survivor.id, role="cc"))
