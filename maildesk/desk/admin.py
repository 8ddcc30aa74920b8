"""What an admin does to tickets by hand, and the queries behind the listing commands.

``assign`` and ``set_queue`` change one ticket and record it in its
history (``assigned`` / ``routed`` events, the admin as actor), as the
rules do (``desk/routing.py``). ``find_agent`` reads an agent given by
address or name. ``assigned_to`` and ``has_tag`` are the WHERE clauses of
``tickets list``; ``open_tickets`` counts what each agent has open.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, exists, func, literal, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from maildesk.config import AgentConfig, Config
from maildesk.desk.tickets import NEW, OPEN, PENDING, record_event
from maildesk.models import Ticket

OPEN_STATUSES = (NEW, OPEN, PENDING)
"""A ticket someone has to work on (as ``routing.OPEN_STATUSES`` counts for ``least_open``)."""
NOBODY = "none"
"""Said instead of an agent: unassign (``tickets assign ID none``), unassigned (``--assignee none``)."""


class AdminError(ValueError):
    """A request that names something the config does not have: one line for the admin."""


def find_agent(config: Config, given: str) -> AgentConfig:
    """The agent ``given`` names, by address or by name, ignoring case."""
    wanted = given.strip().casefold()
    for agent in config.agents:
        if wanted in (agent.address.casefold(), agent.name.casefold()) and wanted:
            return agent
    known = ", ".join(agent.address for agent in config.agents) or "none configured"
    raise AdminError(f"unknown agent {given!r} (agents: {known})")


def assign(session: Session, config: Config, ticket: Ticket, agent: AgentConfig | None, *, actor: str,
           now: datetime) -> str:
    """Give ``ticket`` to ``agent`` (None: to nobody); the history says so. What was done, in words."""
    new = agent.address if agent is not None else None
    if new == ticket.assignee:
        return f"ticket #{ticket.id} is already {'assigned to ' + new if new else 'unassigned'}"
    if agent is None:
        reason = "unassigned by hand"
    elif ticket.queue in agent.queues:
        reason = "assigned by hand"
    else:
        reason = f"assigned by hand; {agent.address} is not an agent of queue {ticket.queue!r}"
    record_event(session, ticket, "assigned", now=now, actor=actor, reason=reason, old=ticket.assignee, new=new,
                 strategy="by hand")
    old, ticket.assignee, ticket.updated_at = ticket.assignee, new, now
    return f"ticket #{ticket.id}: assignee {old or '-'} -> {new or '-'}" + (
        f" (not an agent of queue {ticket.queue!r})" if agent is not None and ticket.queue not in agent.queues
        else "")


def set_queue(session: Session, config: Config, ticket: Ticket, queue: str, *, actor: str, now: datetime) -> str:
    """Move ``ticket`` to ``queue``; the history says so. What was done, in words."""
    if config.queue(queue) is None:
        raise AdminError(f"unknown queue {queue!r} (queues: {', '.join(q.name for q in config.queues)})")
    if queue == ticket.queue:
        return f"ticket #{ticket.id} is already in queue {queue!r}"
    record_event(session, ticket, "routed", now=now, actor=actor, reason="moved by hand", old=ticket.queue, new=queue)
    old, ticket.queue, ticket.updated_at = ticket.queue, queue, now
    return f"ticket #{ticket.id}: queue {old} -> {queue}"


def open_tickets(session: Session, addresses: list[str]) -> dict[str, int]:
    """How many tickets (new, open, pending) each of ``addresses`` is assigned."""
    if not addresses:
        return {}
    rows = session.execute(select(Ticket.assignee, func.count(Ticket.id))
                           .where(Ticket.assignee.in_(addresses), Ticket.status.in_(OPEN_STATUSES))
                           .group_by(Ticket.assignee))
    counts = {address: count for address, count in rows}
    return {address: counts.get(address, 0) for address in addresses}


def assigned_to(given: str) -> ColumnElement[bool]:
    """Tickets assigned to the address ``given`` (``none``: to nobody)."""
    if given.strip().lower() == NOBODY:
        return Ticket.assignee.is_(None)
    return Ticket.assignee == given.strip().lower()


def has_tag(tag: str, dialect: str) -> ColumnElement[bool]:
    """Tickets whose ``tags`` (a JSON list) hold ``tag``; PostgreSQL and SQLite spell it differently."""
    if dialect == "postgresql":
        return Ticket.tags.cast(JSONB).contains([tag])
    values = func.json_each(Ticket.tags).table_valued("value")
    found: Any = exists(select(literal(1)).select_from(values).where(values.c.value == tag))
    return found
