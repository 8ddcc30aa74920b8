"""The two queues an operator watches: ``maildesk inbound`` (the spool of
received mail: list, retry what failed) and ``maildesk outbox`` (outgoing
mail: list, flush what is due, retry what failed)."""

from __future__ import annotations

import sys

import click
from sqlalchemy import select

from maildesk import present, spool
from maildesk.cli import EX_OK, ROW_ID, App, emit_json, table, temporary_failures_exit
from maildesk.cli.paging import PageRequest, envelope, fetch, paged, say_if_cut

# -- inbound spool ------------------------------------------------------------


@click.group()
def inbound() -> None:
    """The inbound spool: what arrived, what failed, retry."""


@inbound.command("list")
@click.option("--failed", is_flag=True, help="Only messages whose processing failed.")
@click.option("--state", type=click.Choice([spool.QUEUED, spool.DONE, spool.FAILED]))
@click.option("--json", "as_json", is_flag=True, help="Print the documented JSON object.")
@paged
@click.pass_obj
def inbound_list(app: App, failed: bool, state: str | None, as_json: bool, page: PageRequest) -> None:
    """List spooled messages, newest first."""
    from maildesk.models import Inbound

    state = spool.FAILED if failed else state
    with temporary_failures_exit(), app.db.session() as session:
        query = select(Inbound) if state is None else select(Inbound).where(Inbound.state == state)
        found = fetch(session, query, Inbound.id, page)
        rows = [present.inbound(r) for r in found.items]
    say_if_cut(len(rows), found.next)
    if as_json:
        emit_json(envelope(rows, found.next))
        return
    shown = [{**row, "outcome": row["error"] or row["disposition"]} for row in rows]
    table(shown, [("id", 6), ("state", 7), ("source", 8), ("ticket_id", 9), ("message_id", 40), ("outcome", 50)])


@inbound.command("retry")
@click.argument("inbound_ids", type=ROW_ID, nargs=-1, required=True)
@click.pass_obj
def inbound_retry(app: App, inbound_ids: tuple[int, ...]) -> None:
    """Queue failed messages again and process them now."""
    from maildesk.process import process

    status = EX_OK
    with temporary_failures_exit():
        for inbound_id in inbound_ids:
            if not spool.retry(app.db, inbound_id):
                click.echo(f"maildesk: inbound {inbound_id} is not a failed message", err=True)
                status = 1
                continue
            outcome = process(app.db, app.config, inbound_id)
            click.echo(f"inbound {inbound_id}: {outcome.state}"
                       + (f", ticket #{outcome.ticket_id}" if outcome.ticket_id else "")
                       + (f" ({outcome.detail})" if outcome.state == spool.FAILED else ""))
            if outcome.state == spool.FAILED:
                status = 1
    sys.exit(status)


# -- outbox -------------------------------------------------------------------


@click.group()
def outbox() -> None:
    """Outgoing mail: what is queued, sent, failed or suppressed; send; retry."""


@outbox.command("list")
@click.option("--status", type=click.Choice(["queued", "sent", "failed", "suppressed"]))
@click.option("--json", "as_json", is_flag=True, help="Print the documented JSON object.")
@paged
@click.pass_obj
def outbox_list(app: App, status: str | None, as_json: bool, page: PageRequest) -> None:
    """List outgoing mail, newest first."""
    from maildesk.models import Outbox

    with temporary_failures_exit(), app.db.session() as session:
        query = select(Outbox) if not status else select(Outbox).where(Outbox.status == status)
        found = fetch(session, query, Outbox.id, page)
        rows = [present.outbox_item(r) for r in found.items]
    say_if_cut(len(rows), found.next)
    if as_json:
        emit_json(envelope(rows, found.next))
        return
    for row in rows:
        row["to"] = ", ".join(row["to"])
        row["why"] = row["last_error"] or row["reason"]
    table(rows, [("id", 6), ("ticket_id", 9), ("kind", 12), ("status", 10), ("attempts", 8), ("to", 28),
                 ("subject", 36), ("why", 40)])


@outbox.command("flush")
@click.pass_obj
def outbox_flush(app: App) -> None:
    """Send every mail that is due, once, then exit."""
    from maildesk import send

    with temporary_failures_exit():
        results = send.flush(app.db, app.config)
    for result in results:
        click.echo(f"outbox {result.outbox_id}: {result.status}" + (f" ({result.error})" if result.error else ""))
    counts = {s: sum(r.status == s for r in results) for s in ("sent", "queued", "failed")}
    click.echo(f"sent {counts['sent']}, deferred {counts['queued']}, failed {counts['failed']}")


@outbox.command("retry")
@click.argument("outbox_ids", type=ROW_ID, nargs=-1, required=True)
@click.pass_obj
def outbox_retry(app: App, outbox_ids: tuple[int, ...]) -> None:
    """Queue failed mail again (attempts start over) and try to send it now."""
    from maildesk import send
    from maildesk.desk import outbound

    status = EX_OK
    with temporary_failures_exit():
        for outbox_id in outbox_ids:
            with app.db.session() as session:
                problem = outbound.requeue(session, outbox_id, now=send.utc_now())
            if problem:
                click.echo(f"maildesk: outbox {outbox_id}: {problem}", err=True)
                status = 1
                continue
            results = send.flush(app.db, app.config, only=outbox_id)
            result = results[0] if results else None
            click.echo(f"outbox {outbox_id}: {result.status if result else 'queued'}"
                       + (f" ({result.error})" if result and result.error else ""))
            if result and result.status == "failed":
                status = 1
    sys.exit(status)
