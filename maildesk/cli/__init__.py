"""The ``maildesk`` command: argument parsing and output, nothing else.

Exit codes follow sysexits where MTAs read them: 0 ok, 2 bad usage or
config, 65 unusable input (EX_DATAERR), 75 temporary failure (EX_TEMPFAIL).

This module holds the ``main`` group and what every command shares; the
commands themselves live in one module per group: ``mail_in`` (ingest,
inspect), ``tickets``, ``queues`` (inbound, outbox), ``rules`` (rules,
agents), ``admin`` (check-config, serve, db, imap) and ``service`` (reload,
status).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import click

from maildesk.config import Config, load_config
from maildesk.db import Database, open_database
from maildesk.errors import ConfigError, TemporaryFailure
from maildesk.logs import setup_logging
from maildesk.models import MAX_ID

EX_OK, EX_USAGE, EX_DATAERR, EX_TEMPFAIL = 0, 2, 65, 75
ROW_ID = click.IntRange(1, MAX_ID)
"""A ticket, spooled message or outbox id given on the command line."""


class App:
    """What every command needs: the config, and the database opened on demand."""

    def __init__(self, config: Config, config_path: str | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self._db: Database | None = None
        self._migrated = False

    @property
    def db(self) -> Database:
        database = self.unmigrated_db
        if not self._migrated:
            database.ensure_schema()
            self._migrated = True
        return database

    @property
    def unmigrated_db(self) -> Database:
        """The database as it is, for the commands that manage its schema."""
        if self._db is None:
            self._db = open_database(self.config.database, migrate=False)
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.dispose()


def fail(message: str, code: int) -> NoReturn:
    click.echo(f"maildesk: {message}", err=True)
    sys.exit(code)


@contextmanager
def temporary_failures_exit() -> Iterator[None]:
    try:
        yield
    except TemporaryFailure as exc:
        fail(str(exc), EX_TEMPFAIL)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def table(rows: list[dict[str, Any]], columns: list[tuple[str, int]]) -> None:
    click.echo("  ".join(name.upper().ljust(width) for name, width in columns).rstrip())
    for row in rows:
        cells = []
        for name, width in columns:
            value = "" if row.get(name) is None else str(row[name])
            value = value.replace("\n", " ")
            cells.append(value if len(value) <= width else value[: width - 1] + "…")
            cells[-1] = cells[-1].ljust(width)
        click.echo("  ".join(cells).rstrip())
    if not rows:
        click.echo("(none)")


def who(address: dict[str, str]) -> str:
    return f"{address['name']} <{address['address']}>" if address["name"] else address["address"] or "-"


@click.group()
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), envvar="MAILDESK_CONFIG",
              help="Config file (default: $MAILDESK_CONFIG, ./maildesk.toml, built-in defaults).")
@click.version_option(package_name="maildesk")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """maildesk turns a support mailbox into a ticket desk."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        fail(str(exc), EX_USAGE)
    setup_logging(config.logging.level, config.logging.format)
    ctx.obj = App(config, config_path)
    ctx.call_on_close(ctx.obj.close)


# The commands import the helpers above, so they are registered last.
from maildesk.cli import admin, mail_in, queues, rules, service, tickets  # noqa: E402

for _command in (
    admin.check_config, admin.serve, admin.db, admin.imap, service.reload, service.status,
    mail_in.ingest, mail_in.inspect,
    tickets.tickets,
    queues.inbound, queues.outbox,
    rules.rules, rules.agents,
):
    main.add_command(_command)
del _command
