"""Tell agents about their tickets: a notification per new ticket and per customer reply.

A notification goes to the ticket's assignee, or to every agent of its
queue while nobody is assigned, never to the agent whose own action caused
it, plus a copy to the addresses a rule's ``notify`` names. Each agent's
copy carries a Reply-To of its own, ``support+<ticket>.<token>@domain``,
signed for that ticket and agent (``desk/agents.py``): replying to it is
how an agent answers, and what proves that the answer is theirs. The
notification shows the new text, the customer's earlier tickets, queue,
priority, assignee and tags, and the commands an agent can write.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from maildesk.config import Config
from maildesk.desk import outbound
from maildesk.desk.agents import agent_reply_address, reply_token
from maildesk.desk.tickets import IncomingMessage, Person
from maildesk.models import Message, Outbox, Ticket

RECENT_TICKETS = 3


def recipients(config: Config, ticket: Ticket, *, exclude: str = "", copies: tuple[str, ...] = ()) -> list[str]:
    """Who hears of a change on ``ticket``: its assignee, else its queue's agents; and ``copies``."""
    agents = [ticket.assignee] if ticket.assignee else [agent.address for agent in config.agents_of(ticket.queue)]
    return [address for address in dict.fromkeys([*agents, *(c.lower() for c in copies)])
            if address and address != exclude.lower()]


def notify(
    session: Session,
    config: Config,
    ticket: Ticket,
    *,
    event: str,
    now: datetime,
    secret: bytes,
    text: str,
    parent: Message | IncomingMessage | None,
    exclude: str = "",
    copies: tuple[str, ...] = (),
    actor: Person | None = None,
) -> list[Outbox]:
    """Queue one notification per recipient; ``event``: new_ticket, customer_reply, agent_reply, escalated.

    ``actor``: the agent whose action it tells of (the template's ``agent``; else the recipient).
    """
    to = recipients(config, ticket, exclude=exclude, copies=copies)
    if not to:
        return []
    served = outbound.served_address(config, ticket)
    extra = {"history": history(session, ticket)}
    rows = []
    for address in to:
        agent = config.agent(address)
        reply_to = []
        if agent is not None:  # a copy for someone who is not an agent: their reply proves nothing
            token = reply_token(secret, ticket.id, agent.address)
            reply_to = [Person(agent_reply_address(served.address, ticket.id, token), served.display_name)]
        rows.append(outbound.enqueue(
            session, config, ticket, "notification", to=[Person(address, agent.name if agent else "")], now=now,
            parent=parent, reply_to=reply_to, message_text=text, event=event,
            agent=actor or Person(address, agent.name if agent else ""), extra=extra,
        ))
    return rows


def history(session: Session, ticket: Ticket) -> dict[str, Any]:
    """The requester's other tickets: how many, and the last few (repeat problems show at a glance)."""
    others = (Ticket.requester == ticket.requester, Ticket.id != ticket.id)
    recent = session.execute(select(Ticket.id, Ticket.subject, Ticket.status, Ticket.created_at)
                             .where(*others).order_by(Ticket.id.desc()).limit(RECENT_TICKETS))
    return {
        "count": session.scalar(select(func.count(Ticket.id)).where(*others)) or 0,
        "recent": [{"id": row.id, "subject": row.subject, "status": row.status,
                    "date": f"{row.created_at:%Y-%m-%d}"} for row in recent],
    }
