"""Routing from the command line: ``maildesk rules test`` (one mail under the rules),
``maildesk rules replay`` (stored mail under today's rules, or a rules file's) and
``maildesk agents list``. None of them writes anything."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import click

from maildesk import present
from maildesk.cli import EX_USAGE, App, emit_json, fail, table, temporary_failures_exit

if TYPE_CHECKING:
    from maildesk.desk.rules import RuleSet


class IsoTime(click.ParamType):
    """An ISO 8601 date or time; without an offset it is read in ``desk.timezone``."""

    name = "ISO-TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(str(value).strip())
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 date or time (e.g. 2026-11-02 or 2026-11-02T09:30+07:00)",
                      param, ctx)
        if moment.tzinfo is None:
            app = ctx.find_object(App) if ctx is not None else None
            zone = ZoneInfo(app.config.desk.timezone) if app is not None else UTC
            moment = moment.replace(tzinfo=zone)
        return moment


ISO_TIME = IsoTime()


@click.group()
def rules() -> None:
    """Try the routing rules on mail; nothing is written."""


@rules.command("test")
@click.argument("file", type=click.File("rb"))
@click.option("--to", "to", metavar="ADDRESS",
              help="The support address the mail came to (default: the first of ours in To/Cc).")
@click.option("--now", "now", type=ISO_TIME,
              help="When it arrived (default: the mail's Date, else now); rules' weekday and hour read it.")
@click.option("--rules", "rules_file", type=click.Path(dir_okay=False, path_type=Path), metavar="RULES",
              help="Use the [[rules]] of the file RULES instead of the configured rules.")
@click.option("--json", "as_json", is_flag=True, help="Print the documented JSON object.")
@click.pass_obj
def rules_test(app: App, file: Any, to: str | None, now: datetime | None, rules_file: Path | None,
               as_json: bool) -> None:
    """Show how the rules would route the mail in FILE, as a new ticket.

    The database, when there is one, is only read: for previous_tickets and
    to resolve round_robin / least_open to an agent.
    """
    from maildesk.desk import replay
    from maildesk.mail.parse import parse

    if to is not None and app.config.address_for(to) is None:
        fail(f"--to {to}: not one of our support addresses "
             f"({', '.join(a.address for a in app.config.addresses)})", EX_USAGE)
    rules_set = _rules(app, rules_file)
    parsed = parse(file.read())
    arrived = now or parsed.date or datetime.now(UTC)
    result, note = replay.trial(app.config, parsed, to=to, arrived=arrived, database=lambda: app.unmigrated_db,
                                rules=rules_set)
    data = present.rules_trial(result.evaluation, result.routing)
    if as_json:
        emit_json({**data, "note": note} if note else data)
        return
    click.echo(f"mail from {result.sender or '-'} to {result.address.address} ({result.automated}), "
               f"as a new ticket, arrived {arrived.isoformat()}")
    if note:
        click.echo(f"note: {note}")
    if not data["rules"]:
        click.echo("no rules configured")
    for step in data["rules"]:
        click.echo(f"\n{step['status']:<12} {step['name']}\n{'':<12} {step['because']}")
        if step["actions"]:
            click.echo(f"{'':<12} then " + ", ".join(f"{k} = {json.dumps(v, ensure_ascii=False)}"
                                                     for k, v in step["actions"].items()))
    click.echo("\noutcome:")
    for key, value in data["outcome"].items():
        click.echo(f"  {key:<12} {_shown(value)}")


def _shown(value: Any) -> str:
    if value is None or value == []:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return str(value)


@rules.command("replay")
@click.option("--last", type=click.IntRange(min=1), metavar="N", help="Only the last N mails stored on tickets.")
@click.option("--since", type=ISO_TIME, metavar="DATE", help="Only mail received since DATE (ISO 8601).")
@click.option("--rules", "rules_file", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Replay under the [[rules]] of FILE instead of the configured rules.")
@click.option("--json", "as_json", is_flag=True, help="Print the documented JSON array.")
@click.pass_obj
def rules_replay(app: App, last: int | None, since: datetime | None, rules_file: Path | None,
                 as_json: bool) -> None:
    """List the tickets whose routing would change under the rules (or those of FILE).

    Every mail stored on a ticket is evaluated again as it was then (new
    ticket or follow-up; its sender's earlier tickets), and its routing is
    compared with the one recorded when it arrived. round_robin and
    least_open show as their names: whom they would have picked back then
    cannot be known, so an assignee is compared only when the rules name an
    agent or nobody. Nothing is written.
    """
    from sqlalchemy.orm import Session

    from maildesk.desk import replay

    rules_set = _rules(app, rules_file)
    with temporary_failures_exit(), app.db.reading() as connection, Session(bind=connection) as session:
        result = replay.replay(session, app.config, rules_set, last=last, since=since)
    rows = [present.replay_change(change) for change in result.changes]
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        kind = "follow-up" if row["followup"] else "new ticket"
        click.echo(f"ticket #{row['ticket_id']}  {row['message_id']}  ({kind})")
        for key in row["changed"]:
            click.echo(f"  {key:<12} {_shown(row['old'][key])}  ->  {_shown(row['new'][key])}")
    click.echo(f"{len(rows)} of {result.examined} mails would be routed differently")


def _rules(app: App, rules_file: Path | None) -> RuleSet:
    """The configured rules, or those of ``rules_file`` (a bad file: one line, exit 2)."""
    from maildesk.desk.replay import rules_of_file
    from maildesk.desk.rules import RuleError

    if rules_file is None:
        return app.config.rules
    try:
        return rules_of_file(app.config, rules_file)
    except RuleError as exc:
        fail(f"{rules_file}: {exc}", EX_USAGE)


@click.group()
def agents() -> None:
    """The agents of the config ([[agents]]) and their work."""


@agents.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the documented JSON array.")
@click.pass_obj
def agents_list(app: App, as_json: bool) -> None:
    """Each agent: address, name, queues, and open tickets (new, open, pending) assigned."""
    from maildesk.desk.admin import open_tickets

    with temporary_failures_exit(), app.db.reading() as connection:
        from sqlalchemy.orm import Session

        with Session(bind=connection) as session:
            counts = open_tickets(session, [agent.address for agent in app.config.agents])
    rows = [present.agent(agent, counts[agent.address]) for agent in app.config.agents]
    if as_json:
        emit_json(rows)
        return
    table([{**row, "queues": ", ".join(row["queues"])} for row in rows],
          [("address", 28), ("name", 20), ("queues", 30), ("open_tickets", 12)])
