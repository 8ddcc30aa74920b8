"""An agent's mail: who may count as one, and what their reply does to a ticket.

A mail is an agent's only when its From is a configured agent AND it
proves that it answers a mail maildesk sent to that agent: it is sent to
the reply address signed for that ticket and that agent (a notification's
Reply-To), or its In-Reply-To/References name a notification (or command
result) maildesk sent to that very agent. With ``desk.agent_auth =
"dmarc"`` the topmost Authentication-Results of our own MTA must also pass
for the agent's domain. Anyone else, the agent's own address included
without proof, is a customer (``identify`` says why, for a ``not_agent``
event).

What a proven agent's mail does (``handle``): commands at the top
(``#status solved`` ...) change the ticket, each an event; ``#note`` (or
mail to ``desk.note_address``) keeps the text as an internal note; any
other text is the agent's answer, relayed to the requester (other
participants in Cc) from the support address as "Agent via Queue", on the
customer's own thread, with the agent's attachments, without the quoted
notification and without the agent's address; the ticket then waits on the customer (``pending``) unless
a command set a status. A refused command changes nothing and the agent
gets one mail back listing what was applied and what was refused.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from maildesk.config import AgentConfig, Config
from maildesk.desk import agents, notifications, outbound, tickets
from maildesk.desk import commands as agent_commands
from maildesk.desk.macros import MacroError, expand, macro_variables, render_macro
from maildesk.desk.tickets import MERGED, PENDING, IncomingMessage, Person, record_event
from maildesk.mail.compose import OutgoingAttachment
from maildesk.models import MAX_ID, QUERY_CHUNK, Message, Outbox, Participant, Ticket

@dataclass(frozen=True)
class Proof:
    """A mail shown to be an agent's answer on ``ticket``."""

    agent: AgentConfig
    ticket: Ticket
    how: str


def identify(
    session: Session, config: Config, secret: bytes, mail: IncomingMessage, *, recipients: list[str],
    headers: list[tuple[str, str]],
) -> tuple[Proof | None, str]:
    """(the proof, "") for an agent's answer; (None, why not) for mail from an agent's address
    that proves nothing; (None, "") for everyone else. ``recipients``: envelope and To/Cc."""
    agent = config.agent(mail.sender.address) if mail.sender.address else None
    if agent is None:
        return None, ""
    referenced = list(dict.fromkeys([*mail.in_reply_to, *reversed(mail.references)]))[:QUERY_CHUNK]
    sent_to_agents = {row.message_id: (row.ticket_id, row.recipient) for row in session.execute(
        select(Outbox.message_id, Outbox.ticket_id, Outbox.recipient).where(
            Outbox.message_id.in_(referenced), Outbox.kind.in_(outbound.TO_AGENTS), Outbox.ticket_id.is_not(None)))
    } if referenced else {}
    identity = agents.identify(sender=agent.address, agents=[a.address for a in config.agents], recipients=recipients,
                               referenced_ids=referenced, notifications=sent_to_agents, secret=secret)
    ticket = _live(session, identity.ticket_id) if identity.is_agent and identity.ticket_id is not None else None
    if ticket is None:
        return None, f"from agent {agent.address}, but not taken as theirs: {identity.reason}"
    if config.desk.agent_auth == "dmarc":
        domain = agent.address.rpartition("@")[2]
        passed, reason = agents.authentication_results_pass(headers, config.desk.authserv_id or "", domain)
        if not passed:
            return None, f"from agent {agent.address}, but not authenticated: {reason}"
    return Proof(agent, ticket, identity.reason), ""


def _live(session: Session, ticket_id: int) -> Ticket | None:
    """The ticket, or the one it was merged into."""
    ticket = session.get(Ticket, ticket_id) if 0 < ticket_id <= MAX_ID else None
    while ticket is not None and ticket.status == MERGED and ticket.linked_ticket_id is not None:
        ticket = session.get(Ticket, ticket.linked_ticket_id)
    return ticket


@dataclass
class _Result:
    applied: list[dict[str, str]]
    refused: list[dict[str, str]]
    status_set: bool = False


def handle(
    session: Session, config: Config, proof: Proof, mail: IncomingMessage, *, inbound_id: int, now: datetime,
    secret: bytes, to_note_address: bool,
) -> str:
    """Apply an agent's mail to its ticket; the disposition in words."""
    ticket, agent = proof.ticket, proof.agent
    actor = agent.address
    parsed = agent_commands.parse(mail.new_text)
    result = _Result([], [refusal.as_dict() for refusal in parsed.refused])
    for command in parsed.commands:
        _apply_command(session, config, ticket, agent, command, result, now=now, secret=secret)
    body, macro_refusals = _expand_macros(config, ticket, agent, parsed)
    result.refused += macro_refusals
    # An answer whose macro could not be written never goes out half-done: it is kept as a note.
    note = parsed.note or to_note_address or bool(macro_refusals)
    stored = replace(mail, new_text=body)
    if note or not body.strip():
        tickets.add_message(session, ticket, stored, inbound_id=inbound_id, kind="note", via=proof.how, now=now)
        what = "note" if note and body.strip() else "commands"
        disposition = f"{what} by agent {actor} on ticket #{ticket.id}"
    else:
        tickets.add_message(session, ticket, stored, inbound_id=inbound_id, kind="agent", via=proof.how, now=now)
        _relay(session, config, ticket, agent, body, now=now, secret=secret, status_set=result.status_set,
               attachments=_files_of(mail))
        disposition = f"agent reply by {actor} on ticket #{ticket.id}, sent to the customer"
    if result.refused:
        outbound.enqueue(session, config, ticket, "command_result", to=[Person(agent.address, agent.name)], now=now,
                         parent=mail, agent=Person(agent.address, agent.name),
                         extra={"applied": result.applied, "refused": result.refused})
    return disposition


def _files_of(mail: IncomingMessage) -> list[OutgoingAttachment]:
    """The files an agent attached; not the pictures their HTML shows inline (a signature's logo)."""
    return [OutgoingAttachment(a["filename"] or a["safe_filename"], a["content_type"], a["content"])
            for a in mail.attachments if not (a["inline"] and a["content_id"])]


def _relay(session: Session, config: Config, ticket: Ticket, agent: AgentConfig, body: str, *, now: datetime,
           secret: bytes, status_set: bool, attachments: list[OutgoingAttachment]) -> None:
    served = outbound.served_address(config, ticket)
    last_customer = session.scalar(
        select(Message).where(Message.ticket_id == ticket.id, Message.direction == "in", Message.kind == "customer")
        .order_by(Message.id.desc()).limit(1))
    cc = [Person(row.address, row.name) for row in session.scalars(
        select(Participant).where(Participant.ticket_id == ticket.id, Participant.role != "requester")
        .order_by(Participant.id))
        if row.address != ticket.requester and config.agent(row.address) is None]
    first = session.scalar(select(Message.id).where(
        Message.ticket_id == ticket.id, Message.kind == "agent", Message.direction == "out").limit(1)) is None
    outbound.enqueue(
        session, config, ticket, "agent_reply", to=[Person(ticket.requester, ticket.requester_name)], cc=cc,
        now=now, parent=last_customer, message_text=body, agent=Person("", agent.name),
        from_name=f"{agent.name} via {served.display_name}" if agent.name else served.display_name,
        attachments=attachments,
    )
    if first:
        record_event(session, ticket, "first_response", now=now, actor=agent.address,
                     reason=f"first answer to the customer, by {agent.name or agent.address}")
    if not status_set:
        tickets.set_status(session, ticket, PENDING, actor=agent.address, now=now,
                           reason="answered by an agent: waiting on the customer")
    notifications.notify(session, config, ticket, event="agent_reply", now=now, secret=secret, text=body,
                         parent=last_customer, exclude=agent.address, actor=Person(agent.address, agent.name))


def _apply_command(session: Session, config: Config, ticket: Ticket, agent: AgentConfig,
                   command: agent_commands.Command, result: _Result, *, now: datetime, secret: bytes) -> None:
    name, argument = command.name, command.argument
    refuse = lambda reason: result.refused.append({"command": command.line, "reason": reason})  # noqa: E731
    applied = lambda detail: result.applied.append({"command": command.line, "detail": detail})  # noqa: E731
    actor = agent.address
    if name == "status":
        tickets.set_status(session, ticket, argument, actor=actor, now=now, reason=f"#status by {actor}")
        result.status_set = True
        applied(f"status is {argument}")
    elif name == "priority":
        if argument == ticket.priority:
            applied(f"priority was already {argument}")
            return
        record_event(session, ticket, "priority", now=now, actor=actor, reason=f"#priority by {actor}",
                     old=ticket.priority, new=argument)
        ticket.priority = argument
        applied(f"priority is {argument}")
    elif name == "assign":
        target = _agent_named(config, argument, me=agent)
        if target is False:
            refuse(f"no agent {argument!r}; one of {', '.join(a.address for a in config.agents)}, me or none")
            return
        new = target.address if target is not None else None
        record_event(session, ticket, "assigned", now=now, actor=actor, reason=f"#assign by {actor}",
                     old=ticket.assignee, new=new)
        ticket.assignee = new
        applied(f"assigned to {new}" if new else "unassigned")
    elif name == "queue":
        if config.queue(argument) is None:
            refuse(f"no queue {argument!r}; one of {', '.join(q.name for q in config.queues)}")
            return
        _move(session, config, ticket, argument, actor=actor, now=now, secret=secret, event="routed")
        applied(f"moved to queue {argument}")
    elif name in ("tag", "untag"):
        tags = list(ticket.tags)
        if name == "tag" and argument not in tags:
            ticket.tags = [*tags, argument]
            record_event(session, ticket, "tagged", now=now, actor=actor, reason=f"#tag by {actor}", tags=[argument])
        elif name == "untag" and argument in tags:
            ticket.tags = [t for t in tags if t != argument]
            record_event(session, ticket, "untagged", now=now, actor=actor, reason=f"#untag by {actor}",
                         tags=[argument])
        applied(f"{name}ged {argument}" if name == "tag" else f"untagged {argument}")
    elif name == "escalate":
        queue = config.queue(ticket.queue)
        if queue is None or queue.escalate_to is None:
            refuse(f"queue {ticket.queue!r} has no escalate_to")
            return
        _move(session, config, ticket, queue.escalate_to, actor=actor, now=now, secret=secret, event="escalated")
        applied(f"escalated to {queue.escalate_to}")
    elif name not in ("note", "macro"):  # a note is the whole reply's fate; macros are written into the body
        refuse(f"unknown command #{name}")


def _move(session: Session, config: Config, ticket: Ticket, queue: str, *, actor: str, now: datetime, secret: bytes,
          event: str) -> None:
    """Move ``ticket`` to ``queue``; an escalation also unassigns it and tells the new queue's agents."""
    if queue == ticket.queue:
        return
    record_event(session, ticket, event, now=now, actor=actor, reason=f"#{'escalate' if event == 'escalated' else 'queue'}"
                 f" by {actor}", old=ticket.queue, new=queue)
    ticket.queue = queue
    if event == "escalated":
        ticket.assignee = None
        notifications.notify(session, config, ticket, event="escalated", now=now, secret=secret,
                             text=f"Escalated by {actor}.", parent=None, exclude=actor, actor=Person(actor))


def _agent_named(config: Config, name: str, *, me: AgentConfig) -> AgentConfig | None | bool:
    """The agent ``name`` means (address, name, "me"), None for "none", False for no such agent."""
    wanted = name.strip().lower()
    if wanted == "none":
        return None
    if wanted == "me":
        return me
    return next((a for a in config.agents if wanted in (a.address, a.name.lower())), False)


def _expand_macros(config: Config, ticket: Ticket, agent: AgentConfig,
                   parsed: agent_commands.Parsed) -> tuple[str, list[dict[str, str]]]:
    """The body with its macros written out; a macro that cannot be is refused and left as written."""
    variables = macro_variables(requester_name=ticket.requester_name or ticket.requester, ticket_id=ticket.id,
                                subject=ticket.subject, queue=ticket.queue, agent_name=agent.name)
    rendered: dict[str, str] = {}
    refused: list[dict[str, str]] = []
    for name in dict.fromkeys(parsed.macros):
        try:
            rendered[name] = render_macro(name, variables, config.outbound.templates)
        except MacroError as exc:
            refused.append({"command": f"#macro {name}", "reason": str(exc)})
            rendered[name] = f"#macro {name}"
    return expand(parsed.body, rendered.__getitem__), refused
