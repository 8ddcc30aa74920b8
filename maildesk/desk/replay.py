"""The rules run on mail without writing anything: ``maildesk rules test`` and ``rules replay``.

``try_mail`` evaluates one parsed mail the way ``process()`` would if it
opened a ticket: the same sender, classification and served address, the
rules' decisions resolved into a ``Routing``. ``replay`` does it again for
the mail already stored on tickets, under the current rules or others, and
returns each mail whose routing would differ from the one recorded when it
was processed (the ``rules`` ticket event, see ``desk/routing.py``).

Both only read: the caller gives a session whose transaction it rolls back
(or none at all, for ``rules test`` without a database).

What replay cannot know: which agent a strategy (``round_robin``,
``least_open``) would have picked back then, since that depends on who was
assigned what at the time. The new routing shows the strategy's name, and
an assignee is compared only when the new rules name an agent or nobody.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from maildesk import spool
from maildesk.config import AddressConfig, Config
from maildesk.db import Database
from maildesk.desk import routing
from maildesk.desk.rules import ASSIGN_STRATEGIES, Evaluation, RuleError, RuleSet, check_references, rules_from_toml
from maildesk.errors import TemporaryFailure
from maildesk.templating import template_names
from maildesk.desk.tickets import MERGED
from maildesk.mail import classify
from maildesk.mail.parse import ParsedMail, parse
from maildesk.models import Inbound, Message, Ticket, TicketEvent, chunks

# process.py owns how a mail's sender and support address are read; the same functions serve here.
from maildesk.process import sender_of, served_address


@dataclass(frozen=True)
class _Envelope:
    """The part of a spool row ``process.served_address`` reads."""

    envelope: dict[str, Any]


@dataclass(frozen=True)
class Trial:
    """One mail under the rules: who sent it, where it came to, and what the rules decide."""

    sender: str
    address: AddressConfig
    automated: str
    evaluation: Evaluation
    routing: routing.Routing


def try_mail(session: Session | None, config: Config, parsed: ParsedMail, *, to: str | None,
             arrived: datetime, rules: RuleSet | None = None) -> Trial:
    """Evaluate ``parsed`` as a mail opening a ticket; ``to``: the support address it came to
    (else To/Cc decide, as for any mail). ``session`` None: ``previous_tickets`` is 0 and an
    assignment strategy stays unresolved (its name)."""
    rules = config.rules if rules is None else rules
    envelope = {"rcpt_to": [to]} if to else {}
    sender, _ = sender_of(parsed, envelope)
    verdict = classify.classify(parsed.message, sender.address, loop_ids=[a.address for a in config.addresses],
                                own_domains=[config.desk.domain])
    served = served_address(config, _Envelope(envelope), parsed)  # type: ignore[arg-type]
    mail = routing.rule_input(None, config, parsed, address=served.address, sender=sender.address,
                              automated=verdict.kind, arrived=arrived, ticket=None)
    if session is not None and "previous_tickets" in rules.fields:
        mail = replace(mail, previous_tickets=routing.previous_tickets(session, sender.address))
    evaluation = rules.evaluate(mail)
    return Trial(sender.address, served, verdict.kind, evaluation,
                 routing.resolve(session, config, evaluation, queue=served.queue))


def trial(config: Config, parsed: ParsedMail, *, to: str | None, arrived: datetime,
          database: Callable[[], Database], rules: RuleSet | None = None) -> tuple[Trial, str]:
    """``try_mail`` with the database when there is one to read (``database`` opens it), else
    without; and a note saying what was left out, "" when nothing was. Writes nothing, and
    creates no SQLite file."""
    url = make_url(config.database.url)
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
        missing = f"no database at {url.database}"
    else:
        try:
            with database().reading() as connection, Session(bind=connection) as session:
                session.execute(select(Ticket.id).limit(1))
                return try_mail(session, config, parsed, to=to, arrived=arrived, rules=rules), ""
        except (SQLAlchemyError, TemporaryFailure) as exc:
            missing = f"database not readable ({_first_line(exc)})"
    note = f"{missing}: previous_tickets counted as 0, an assignment strategy shown by its name"
    return try_mail(None, config, parsed, to=to, arrived=arrived, rules=rules), note


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def rules_of_file(config: Config, path: Path) -> RuleSet:
    """The rules of a rules file, checked against the config's queues, agents and templates;
    ``RuleError`` (one line) when the file cannot be used."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleError(f"cannot read it: {exc}") from None
    rules = rules_from_toml(text)
    check_references(rules, queues=[queue.name for queue in config.queues],
                     agents=[agent.address for agent in config.agents],
                     template_kinds=template_names(config.outbound.templates))
    return rules


# -- replay ---------------------------------------------------------------------

_EVENT_TYPES = ("created", "rules", "message", "routed", "priority", "assigned")


@dataclass(frozen=True)
class Change:
    """A stored mail the rules would now route differently."""

    ticket_id: int
    message_id: str
    followup: bool
    old: dict[str, Any]
    new: dict[str, Any]
    changed: tuple[str, ...]


@dataclass(frozen=True)
class Replay:
    examined: int
    changes: list[Change]


@dataclass(frozen=True)
class _TicketThen:
    """A ticket as it was when a follow-up arrived (what ``routing.resolve`` reads of it)."""

    id: int
    queue: str
    priority: str
    assignee: str | None


def replay(session: Session, config: Config, rules: RuleSet, *, last: int | None = None,
           since: datetime | None = None) -> Replay:
    """Evaluate the stored inbound mail again under ``rules``; the mails whose routing would change.

    A mail counts as new when its ticket's ``created`` event names it, else
    as a follow-up on the ticket as it was then. "Old" is the routing the
    ``rules`` event recorded for it, or, when no rule ran then, the defaults
    (the ticket's queue, normal priority, nobody, no tags...).
    """
    rows = _stored_mail(session, last=last, since=since)
    events = _events(session, {row.ticket_id for row in rows})
    changes = []
    for row in rows:
        raw = spool.raw_in(session, row.id)
        if raw is None:
            continue
        change = _replay_one(session, config, rules, row, parse(raw), events)
        if change is not None:
            changes.append(change)
    return Replay(len(rows), changes)


def _stored_mail(session: Session, *, last: int | None, since: datetime | None) -> list[Any]:
    """Spool rows that were processed onto a ticket (not duplicates, not dropped), oldest first."""
    query = (select(Inbound.id, Inbound.envelope, Inbound.message_id, Inbound.received_at, Message.ticket_id)
             .join(Message, Message.inbound_id == Inbound.id)
             .where(Inbound.state == spool.DONE, Inbound.ticket_id.is_not(None)))
    if since is not None:
        query = query.where(Inbound.received_at >= since)
    query = query.order_by(Inbound.id.desc())
    if last is not None:
        query = query.limit(last)
    return list(reversed(session.execute(query).all()))


@dataclass
class _Events:
    by_ticket: dict[int, list[TicketEvent]]
    rules_of: dict[str, TicketEvent]
    message_of: dict[str, TicketEvent]
    created_by: dict[str, int]


def _events(session: Session, ticket_ids: set[int]) -> _Events:
    """The history replay reads, of the tickets and of those merged into them (their events stay there)."""
    found, frontier = set(ticket_ids), set(ticket_ids)
    while frontier:
        merged = set()
        for part in chunks(sorted(frontier)):
            merged.update(session.scalars(select(Ticket.id).where(
                Ticket.linked_ticket_id.in_(part), Ticket.status == MERGED)))
        frontier = merged - found
        found |= frontier
    result = _Events({}, {}, {}, {})
    for part in chunks(sorted(found)):
        for event in session.scalars(select(TicketEvent).where(
                TicketEvent.ticket_id.in_(part), TicketEvent.type.in_(_EVENT_TYPES)).order_by(TicketEvent.id)):
            result.by_ticket.setdefault(event.ticket_id, []).append(event)
            message_id = (event.detail or {}).get("message_id")
            if not message_id:
                continue
            if event.type == "rules":
                result.rules_of[message_id] = event
            elif event.type == "message":
                result.message_of.setdefault(message_id, event)
            elif event.type == "created":
                result.created_by[message_id] = event.ticket_id
    return result


def _replay_one(session: Session, config: Config, rules: RuleSet, row: Any, parsed: ParsedMail,
                events: _Events) -> Change | None:
    message_id = row.message_id or parsed.message_id
    boundary = events.rules_of.get(message_id) or events.message_of.get(message_id)
    home = boundary.ticket_id if boundary is not None else row.ticket_id
    followup = message_id not in events.created_by
    before = _state_before(events.by_ticket.get(home, []), boundary)
    arrived = boundary.at if boundary is not None else row.received_at

    sender, _ = sender_of(parsed, row.envelope or {})
    verdict = classify.classify(parsed.message, sender.address, loop_ids=[a.address for a in config.addresses],
                                own_domains=[config.desk.domain])
    served = served_address(config, _Envelope(row.envelope or {}), parsed)  # type: ignore[arg-type]
    queue = before.queue if before.queue else served.queue
    then = _TicketThen(home, queue, before.priority, before.assignee)
    mail = routing.rule_input(None, config, parsed, address=served.address, sender=sender.address,
                              automated=verdict.kind, arrived=arrived, ticket=None)
    previous = routing.previous_tickets(session, sender.address, before=home) if "previous_tickets" in rules.fields \
        else 0
    mail = replace(mail, previous_tickets=previous, followup=followup)
    evaluation = rules.evaluate(mail)
    ticket = then if followup else None
    new = routing.resolve(None, config, evaluation, queue=queue, ticket=ticket).as_dict()  # type: ignore[arg-type]

    recorded = events.rules_of.get(message_id)
    if recorded is not None and isinstance(recorded.detail.get("routing"), dict):
        old = {key: recorded.detail["routing"].get(key) for key in routing.ROUTING_KEYS}
    else:  # no rule ran on it: what resolve gives without an evaluation
        old = routing.resolve(None, config, None, queue=queue, ticket=ticket).as_dict()  # type: ignore[arg-type]
    changed = tuple(key for key in routing.ROUTING_KEYS if _differs(key, old[key], new[key]))
    if not changed:
        return None
    return Change(home, message_id, followup, old, new, changed)


def _differs(key: str, old: Any, new: Any) -> bool:
    if key == "assignee" and new in ASSIGN_STRATEGIES:
        return False  # who a strategy would have picked then cannot be known
    if key == "tags":
        return list(old or []) != list(new or [])
    return old != new


@dataclass
class _State:
    queue: str = ""
    priority: str = "normal"
    assignee: str | None = None


def _state_before(history: Iterable[TicketEvent], boundary: TicketEvent | None) -> _State:
    """Queue, priority and assignee of a ticket just before the mail that ``boundary`` belongs to
    (its ``rules`` event, or its ``message`` event when no rule ran), from the ticket's history.

    The changes the rules made for that mail share the boundary's time and are left out.
    """
    state = _State()
    for event in _until(history, boundary):
        new = (event.detail or {}).get("new")
        if event.type == "created":
            state.queue = (event.detail or {}).get("queue") or state.queue
        elif event.type == "routed" and new:
            state.queue = new
        elif event.type == "priority" and new:
            state.priority = new
        elif event.type == "assigned":
            state.assignee = new
    return state


def _until(history: Iterable[TicketEvent], boundary: TicketEvent | None) -> Iterator[TicketEvent]:
    for event in history:
        if boundary is not None and (event.id >= boundary.id or event.at >= boundary.at):
            if event.type == "created" and event.id < boundary.id:
                yield event  # the ticket's own creation, by this very mail
            continue
        yield event
