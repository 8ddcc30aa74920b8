"""Running and looking after the desk: ``maildesk check-config``,
``maildesk serve`` (the daemon), ``maildesk db`` (schema migrations) and
``maildesk imap`` (mailbox status, one-off polls)."""

from __future__ import annotations

import sys

import click

from maildesk.cli import EX_OK, EX_TEMPFAIL, EX_USAGE, App, emit_json, fail, table, temporary_failures_exit
from maildesk.config import masked
from maildesk.errors import ConfigError, TemporaryFailure


@click.command("check-config")
@click.pass_obj
def check_config(app: App) -> None:
    """Validate the config and the template overrides; print the effective settings (secrets masked)."""
    from maildesk import settings

    try:
        settings.load(app.config_path, config=app.config)
    except ConfigError as exc:
        fail(str(exc), EX_USAGE)
    emit_json(masked(app.config))


@click.command()
@click.pass_obj
def serve(app: App) -> None:
    """Run the daemon: listeners, pollers and the processor, until SIGTERM."""
    from maildesk import settings
    from maildesk.service import run_service

    with temporary_failures_exit():
        try:
            run_service(settings.load(app.config_path, config=app.config), app.db)
        except ConfigError as exc:  # a broken template, a listener that cannot start: bad cert, port taken
            fail(str(exc), EX_USAGE)


# -- database ---------------------------------------------------------------


@click.group()
def db() -> None:
    """Database schema: show and apply migrations."""


@db.command("upgrade")
@click.argument("revision", default="head")
@click.pass_obj
def db_upgrade(app: App, revision: str) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    with temporary_failures_exit():
        database = app.unmigrated_db
        database.upgrade(revision)
        click.echo(f"database at revision {database.current_revision()}")


@db.command("downgrade")
@click.argument("revision")
@click.pass_obj
def db_downgrade(app: App, revision: str) -> None:
    """Undo migrations down to REVISION ('base' empties the database)."""
    with temporary_failures_exit():
        database = app.unmigrated_db
        database.downgrade(revision)
        click.echo(f"database at revision {database.current_revision() or 'base'}")


@db.command("current")
@click.pass_obj
def db_current(app: App) -> None:
    """Show the schema revision of the database and the newest one known."""
    with temporary_failures_exit():
        database = app.unmigrated_db
        current, head = database.current_revision(), database.head_revision()
        state = "up to date" if current == head else "needs 'maildesk db upgrade'"
        click.echo(f"current: {current or 'none'}\nhead:    {head}\n{state}")


# -- imap ---------------------------------------------------------------------


@click.group()
def imap() -> None:
    """The IMAP mailboxes maildesk fetches mail from ([[imap]] in the config)."""


@imap.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the documented JSON object.")
@click.pass_obj
def imap_status(app: App, as_json: bool) -> None:
    """Per mailbox: position (UIDVALIDITY, last UID), counters, last poll and error.

    Every configured mailbox is listed, so the list is never cut (``next`` is always null).
    """
    from maildesk.cli.paging import envelope
    from maildesk.receive import imap_state

    with temporary_failures_exit():
        rows = imap_state.status(app.db, [box.name for box in app.config.imap])
    if as_json:
        emit_json(envelope(rows, None))
        return
    table(rows, [("name", 16), ("last_uid", 8), ("fetched", 8), ("deduplicated", 12), ("failed", 6),
                 ("last_poll_at", 25), ("last_error", 50)])


@imap.command("poll")
@click.argument("names", nargs=-1)
@click.pass_obj
def imap_poll(app: App, names: tuple[str, ...]) -> None:
    """Fetch new mail from each mailbox (or those NAMES) once, into the spool, and exit."""
    from maildesk.receive.imap import MailboxPoller, describe

    unknown = sorted(set(names) - {box.name for box in app.config.imap})
    if unknown:
        fail(f"no [[imap]] mailbox named {', '.join(unknown)}", EX_USAGE)
    status = EX_OK
    for box in app.config.imap:
        if names and box.name not in names:
            continue
        try:
            result = MailboxPoller(box, app.db).run_once()
        except TemporaryFailure as exc:
            fail(str(exc), EX_TEMPFAIL)
        except Exception as exc:  # noqa: BLE001 - report each mailbox, go on with the next
            click.echo(f"maildesk: imap {box.name}: {describe(exc)}", err=True)
            status = EX_TEMPFAIL
            continue
        click.echo(f"imap {box.name}: fetched {result.fetched}, deduplicated {result.deduplicated}")
    sys.exit(status)
