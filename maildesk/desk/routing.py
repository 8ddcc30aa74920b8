"""Route a ticket by the rules: what the rules see of a mail, their decisions applied with history.

``desk/rules.py`` decides (pure); this module reads what a decision needs
from the database (the sender's earlier tickets, the agents' open tickets
for ``least_open``, the queue's last assignee for ``round_robin``) and
writes what was decided onto the ticket, each change a history event that
names the rule. ``process()`` calls ``evaluate`` and ``resolve`` before it
opens a ticket (the queue is chosen before the ticket exists) and ``apply``
after; ``maildesk rules test`` and ``rules replay`` call the first two and
write nothing.

Every evaluation is also kept in one ``rules`` event with its outcome
(``routing``), so ``rules replay`` can compare what was decided then with
what the rules of today would decide.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from maildesk.config import Config
from maildesk.desk.rules import Evaluation, RuleInput, choose_agent
from maildesk.desk.tickets import CLOSED, NEW, OPEN, PENDING, record_event, set_status
from maildesk.mail.parse import ParsedMail
from maildesk.models import Ticket

log = structlog.get_logger(__name__)

OPEN_STATUSES = (NEW, OPEN, PENDING)
ROUTING_KEYS = ("queue", "priority", "assignee", "tags", "sla", "acknowledge", "spam")
"""The routing a mail got, as ``rules test`` and ``rules replay`` show it."""


@dataclass(frozen=True)
class Routing:
    """Where the rules send a ticket, resolved: an agent for a strategy, the defaults filled in."""

    queue: str
    priority: str
    assignee: str | None
    tags: tuple[str, ...]
    remove_tags: tuple[str, ...]
    sla: str | None
    acknowledge: bool | str
    """False, True, or the template to acknowledge with instead of ``ack``."""
    spam: bool
    status: str | None
    notify: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"queue": self.queue, "priority": self.priority, "assignee": self.assignee,
                "tags": list(self.tags), "sla": self.sla, "acknowledge": self.acknowledge, "spam": self.spam}


def uses_previous_tickets(config: Config) -> bool:
    return "previous_tickets" in config.rules.fields


def rule_input(
    session: Session | None, config: Config, parsed: ParsedMail, *, address: str, sender: str, automated: str,
    arrived: datetime, ticket: Ticket | None,
) -> RuleInput:
    """What the rules see of ``parsed``; ``ticket``: the ticket it joins (None: it opens one).

    ``previous_tickets`` is counted only when a rule reads it (one query).
    """
    previous = 0
    if session is not None and uses_previous_tickets(config):
        previous = previous_tickets(session, sender, before=ticket.id if ticket is not None else None)
    mail = RuleInput.from_parsed(
        parsed, address=address, automated=automated, sender_is_agent=config.agent(sender) is not None,
        previous_tickets=previous, arrived=arrived.astimezone(ZoneInfo(config.desk.timezone)),
        followup=ticket is not None,
    )
    return mail if mail.sender == sender else replace(mail, sender=sender)


def previous_tickets(session: Session, requester: str, *, before: int | None = None) -> int:
    """How many tickets ``requester`` opened (before ticket ``before``, when given)."""
    if not requester:
        return 0
    query = _EARLIER_TICKETS if before is not None else _TICKETS_OF
    # On the connection: an ORM statement would first flush what waits to be written, for a COUNT.
    return session.connection().execute(query, {"requester": requester.lower(), "before": before}).scalar() or 0


_TICKETS_OF = select(func.count(Ticket.id)).where(Ticket.requester == bindparam("requester"))
_EARLIER_TICKETS = _TICKETS_OF.where(Ticket.id < bindparam("before"))


def resolve(session: Session | None, config: Config, evaluation: Evaluation | None, *, queue: str,
            ticket: Ticket | None = None) -> Routing:
    """The routing ``evaluation`` decides for a ticket of ``queue`` (or for ``ticket``, a follow-up).

    A strategy picks among the agents of the ticket's queue, with the data
    the database gives (no session: the strategy stays unresolved, as its
    name). On a follow-up a strategy never replaces an assignee.
    """
    outcome = evaluation.outcome if evaluation is not None else None
    if outcome is None or outcome.is_empty:
        return Routing(queue=queue if ticket is None else ticket.queue,
                       priority="normal" if ticket is None else ticket.priority,
                       assignee=None if ticket is None else ticket.assignee, tags=(), remove_tags=(), sla=None,
                       acknowledge=True, spam=False, status=None, notify=())
    routed_queue = outcome.queue or (queue if ticket is None else ticket.queue)
    assignee = outcome.assignee or (ticket.assignee if ticket is not None else None)
    if outcome.assign_strategy is not None and assignee is None:
        assignee = _choose(session, config, outcome.assign_strategy, routed_queue)
    acknowledge: bool | str = True if outcome.acknowledge is None else outcome.acknowledge
    return Routing(
        queue=routed_queue,
        priority=outcome.priority or ("normal" if ticket is None else ticket.priority),
        assignee=assignee, tags=outcome.tags, remove_tags=outcome.remove_tags, sla=outcome.sla,
        acknowledge=False if outcome.spam else acknowledge, spam=bool(outcome.spam), status=outcome.status,
        notify=outcome.notify,
    )


def _choose(session: Session | None, config: Config, strategy: str, queue: str) -> str | None:
    agents = [agent.address for agent in config.agents_of(queue)]
    if session is None or not agents:
        return strategy if session is None else None
    # The ORM session, not its connection: a ticket assigned earlier in this batch may wait to be flushed.
    if strategy == "round_robin":
        last = session.scalar(
            select(Ticket.assignee).where(Ticket.queue == queue, Ticket.assignee.in_(agents))
            .order_by(Ticket.id.desc()).limit(1))
        return choose_agent(strategy, agents, last_assignee=last)
    rows = session.execute(
        select(Ticket.assignee, func.count(Ticket.id))
        .where(Ticket.assignee.in_(agents), Ticket.status.in_(OPEN_STATUSES)).group_by(Ticket.assignee))
    return choose_agent(strategy, agents, open_tickets={address: count for address, count in rows})


def apply(session: Session, ticket: Ticket, evaluation: Evaluation, routing: Routing, *, now: datetime,
          message_id: str) -> None:
    """Write ``routing`` onto ``ticket``; each change an event naming the rules that decided it."""
    outcome = evaluation.outcome
    by = _deciders(evaluation)
    if outcome.queue is not None and routing.queue != ticket.queue:
        _event(session, ticket, "routed", by["queue"], now, old=ticket.queue, new=routing.queue)
        ticket.queue = routing.queue
    if outcome.priority is not None and routing.priority != ticket.priority:
        _event(session, ticket, "priority", by["priority"], now, old=ticket.priority, new=routing.priority)
        ticket.priority = routing.priority
    if routing.assignee != ticket.assignee and routing.assignee is not None:
        how = outcome.assign_strategy or "named agent"
        _event(session, ticket, "assigned", by["assign"], now, old=ticket.assignee, new=routing.assignee,
               strategy=how)
        ticket.assignee = routing.assignee
    elif outcome.assign_strategy is not None and routing.assignee is None:
        _event(session, ticket, "not_assigned", by["assign"], now,
               why=f"queue {routing.queue!r} has no agents for {outcome.assign_strategy}")
    tags = [tag for tag in dict.fromkeys([*ticket.tags, *routing.tags]) if tag not in routing.remove_tags]
    if tags != list(ticket.tags):
        added = [t for t in tags if t not in ticket.tags]
        removed = [t for t in ticket.tags if t not in tags]
        if added:
            _event(session, ticket, "tagged", by["tags"], now, tags=added)
        if removed:
            _event(session, ticket, "untagged", by["remove_tags"], now, tags=removed)
        ticket.tags = tags
    if routing.sla is not None and routing.sla != ticket.sla_policy:
        _event(session, ticket, "sla_policy", by["sla"], now, old=ticket.sla_policy, new=routing.sla)
        ticket.sla_policy = routing.sla
    if routing.spam and not ticket.spam:
        ticket.spam = True
        _event(session, ticket, "spam", by["spam"], now)
        set_status(session, ticket, CLOSED, actor="maildesk", now=now, reason=f"spam, by {by['spam']}")
    elif routing.status is not None:
        set_status(session, ticket, routing.status, actor="maildesk", now=now, reason=f"by {by['status']}")
    if outcome.acknowledge is False or (outcome.acknowledge is not None and routing.spam):
        _event(session, ticket, "not_acknowledged", by["acknowledge"] or by["spam"], now)
    record_event(session, ticket, "rules", now=now, reason="routed by " + (", ".join(
        f'"{t.name}"' for t in evaluation.matched) or "no rule (defaults)"),
        message_id=message_id, routing=routing.as_dict(), matched=[t.name for t in evaluation.matched],
        failed=[t.name for t in evaluation.failed])


def _deciders(evaluation: Evaluation) -> dict[str, str]:
    """For each action, the matching rules that set it, as the history names them."""
    by: dict[str, list[str]] = {}
    for trace in evaluation.matched:
        actions = trace.actions
        assert actions is not None
        for name, value in actions.as_dict().items():
            by.setdefault(name, []).append(f'rule "{trace.name}"')
    return {name: ", ".join(by.get(name, [])) for name in
            ("queue", "priority", "assign", "tags", "remove_tags", "sla", "acknowledge", "notify", "status", "spam")}


def _event(session: Session, ticket: Ticket, type_: str, decided_by: str, now: datetime, **detail: Any) -> None:
    record_event(session, ticket, type_, now=now, reason=decided_by, **detail)


def log_failures(evaluation: Evaluation, **context: Any) -> None:
    """A rule that failed at run time is skipped; say so in the log."""
    for trace in evaluation.failed:
        log.warning("rule failed and was skipped", rule=trace.name, because=trace.because, **context)
