"""``maildesk tickets list`` and ``maildesk tickets show``: reading tickets, as
a table or the documented JSON; ``maildesk tickets set-status``: an admin's
status change, which the requester hears of as an update or solved mail;
``tickets assign`` and ``tickets set-queue``: an admin's routing by hand."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import click
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from maildesk import present
from maildesk.cli import EX_USAGE, ROW_ID, App, emit_json, fail, table, temporary_failures_exit, who
from maildesk.cli.paging import PageRequest, envelope, fetch, paged, say_if_cut
from maildesk.desk import admin
from maildesk.desk.rules import PRIORITIES
from maildesk.desk.tickets import MERGED, STATUSES, set_status
from maildesk.models import Message, Ticket


@click.group()
def tickets() -> None:
    """List and show tickets."""


@tickets.command("list")
@click.option("--status", help="Only tickets with this status (merged tickets show only when asked for).")
@click.option("--queue", help="Only tickets in this queue.")
@click.option("--assignee", metavar="ADDRESS|none", help="Only tickets assigned to ADDRESS (none: unassigned).")
@click.option("--priority", type=click.Choice(PRIORITIES), help="Only tickets of this priority.")
@click.option("--tag", help="Only tickets with this tag.")
@click.option("--json", "as_json", is_flag=True, help="Print the documented JSON object.")
@paged
@click.pass_obj
def tickets_list(app: App, status: str | None, queue: str | None, assignee: str | None, priority: str | None,
                 tag: str | None, as_json: bool, page: PageRequest) -> None:
    """List tickets, newest first."""
    with temporary_failures_exit(), app.db.session() as session:
        query = select(Ticket)
        if status:
            query = query.where(Ticket.status == status)
        else:
            query = query.where(Ticket.status != MERGED)
        if queue:
            query = query.where(Ticket.queue == queue)
        if assignee:
            query = query.where(admin.assigned_to(assignee))
        if priority:
            query = query.where(Ticket.priority == priority)
        if tag:
            query = query.where(admin.has_tag(tag, session.get_bind().dialect.name))
        found = fetch(session, query, Ticket.id, page)
        rows = [present.ticket_summary(t) for t in found.items]
    say_if_cut(len(rows), found.next)
    if as_json:
        emit_json(envelope(rows, found.next))
        return
    table(rows, [("id", 6), ("status", 8), ("queue", 10), ("priority", 8), ("requester", 28), ("subject", 40)])


@tickets.command("show")
@click.argument("ticket_id", type=ROW_ID)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def tickets_show(app: App, ticket_id: int, as_json: bool) -> None:
    """Show one ticket with its messages and history."""
    with temporary_failures_exit(), app.db.session() as session:
        ticket = session.scalar(
            select(Ticket).where(Ticket.id == ticket_id).options(
                selectinload(Ticket.messages).selectinload(Message.attachments),
                selectinload(Ticket.participants),
                selectinload(Ticket.events),
            )
        )
        if ticket is None:
            fail(f"no ticket #{ticket_id}", 1)
        data = present.ticket_detail(ticket)
    if as_json:
        emit_json(data)
        return
    click.echo(f"#{data['id']} {data['subject']}\n"
               f"status {data['status']} · queue {data['queue']} · priority {data['priority']} · "
               f"requester {data['requester']} · assignee {data['assignee'] or '-'}")
    if data["linked_ticket_id"]:
        click.echo(f"linked to #{data['linked_ticket_id']}")
    click.echo("participants: " + ", ".join(f"{p['address']} ({p['role']})" for p in data["participants"]))
    for item in data["messages"]:
        click.echo(f"\n--- {item['direction']} {item['kind']} {item['date'] or ''} from {who(item['from'])} "
                   f"[{item['classification']['class']}]\n{item['new_text']}")
        for att in item["attachments"]:
            click.echo(f"    attachment {att['safe_filename']} ({att['content_type']}, {att['size']} bytes)")
    click.echo("\nhistory:")
    for item in data["events"]:
        click.echo(f"  {item['at']} {item['type']:<18} {item['actor']}: {item['reason']}")


@tickets.command("set-status")
@click.argument("ticket_id", type=ROW_ID)
@click.argument("status", type=click.Choice(STATUSES))
@click.option("--note", default="", help="Text for the customer's update mail (and the history).")
@click.option("--notify/--no-notify", default=True,
              help="Mail the requester about the change (update, or solved); never for new or closed.")
@click.option("--actor", default=lambda: f"cli:{os.environ.get('USER', 'admin')}", show_default="cli:$USER",
              help="Who made the change, for the history.")
@click.pass_obj
def tickets_set_status(app: App, ticket_id: int, status: str, note: str, notify: bool, actor: str) -> None:
    """Change a ticket's status; the requester hears of it as an update or solved mail."""
    from maildesk.desk import outbound  # brings the templates, which the reading commands skip

    with temporary_failures_exit(), app.db.session() as session:
        ticket = session.get(Ticket, ticket_id)
        if ticket is None or ticket.status == MERGED:
            fail(f"no ticket #{ticket_id}" if ticket is None
                 else f"ticket #{ticket_id} was merged into #{ticket.linked_ticket_id}", 1)
        old, now = ticket.status, datetime.now(UTC)
        set_status(session, ticket, status, actor=actor, now=now, reason=note or f"set to {status}")
        mail = outbound.status_changed(session, app.config, ticket, old=old, new=status, now=now, note=note) \
            if notify else None
    said = f"ticket #{ticket_id}: {old} -> {status}"
    if mail is None:
        click.echo(said)
    elif mail.status == "suppressed":
        click.echo(f"{said}; {mail.kind} mail to {', '.join(mail.to)} not sent: {mail.reason}")
    else:
        click.echo(f"{said}, {mail.kind} mail queued for {', '.join(mail.to)}")


_ACTOR = click.option("--actor", default=lambda: f"cli:{os.environ.get('USER', 'admin')}", show_default="cli:$USER",
                      help="Who made the change, for the history.")


@tickets.command("assign")
@click.argument("ticket_id", type=ROW_ID)
@click.argument("agent", metavar="AGENT|none")
@_ACTOR
@click.pass_obj
def tickets_assign(app: App, ticket_id: int, agent: str, actor: str) -> None:
    """Give a ticket to AGENT (an agent's address or name), or to nobody (none)."""
    try:
        chosen = None if agent.strip().lower() == admin.NOBODY else admin.find_agent(app.config, agent)
    except admin.AdminError as exc:
        fail(str(exc), EX_USAGE)
    with temporary_failures_exit(), app.db.session() as session:
        ticket = _live_ticket(session, ticket_id)
        said = admin.assign(session, app.config, ticket, chosen, actor=actor, now=datetime.now(UTC))
    click.echo(said)


@tickets.command("set-queue")
@click.argument("ticket_id", type=ROW_ID)
@click.argument("queue")
@_ACTOR
@click.pass_obj
def tickets_set_queue(app: App, ticket_id: int, queue: str, actor: str) -> None:
    """Move a ticket to QUEUE."""
    if app.config.queue(queue) is None:
        fail(f"unknown queue {queue!r} (queues: {', '.join(q.name for q in app.config.queues)})", EX_USAGE)
    with temporary_failures_exit(), app.db.session() as session:
        ticket = _live_ticket(session, ticket_id)
        said = admin.set_queue(session, app.config, ticket, queue, actor=actor, now=datetime.now(UTC))
    click.echo(said)


def _live_ticket(session: Session, ticket_id: int) -> Ticket:
    ticket = session.get(Ticket, ticket_id)
    if ticket is None or ticket.status == MERGED:
        fail(f"no ticket #{ticket_id}" if ticket is None
             else f"ticket #{ticket_id} was merged into #{ticket.linked_ticket_id}", 1)
    return ticket
