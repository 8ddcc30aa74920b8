"""Looking after the running service: ``maildesk reload`` (SIGHUP to the daemon
named by its pid file) and ``maildesk status`` (one screen for an admin, read
from the database, so it works beside a running daemon or without one)."""

from __future__ import annotations

import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from maildesk.cli import EX_OK, EX_TEMPFAIL, App, emit_json, fail, temporary_failures_exit

SYSTEMD_PID_FILE = Path("/run/maildesk/maildesk.pid")
"""Where the daemon writes its pid under the shipped unit (RuntimeDirectory=maildesk)."""


@click.command()
@click.pass_obj
def reload(app: App) -> None:
    """Make the running daemon read its config and templates again (SIGHUP)."""
    service = app.config.service
    path = service.pid_path()
    # Under systemd the daemon's pid file is in its RuntimeDirectory, which an admin's shell is not told of.
    candidates = [path] + ([SYSTEMD_PID_FILE] if service.pid_file is None else [])
    found = next((candidate for candidate in candidates if candidate.exists()), None)
    if found is None:
        fail(f"no pid file at {path}: is `maildesk serve` running (with this config)?", 1)
    path = found
    try:
        text = path.read_text().strip()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}", 1)
    if not text.isdigit():
        fail(f"{path} does not hold a process id", 1)
    pid = int(text)
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        fail(f"no process {pid}: {path} is left over from a daemon that is gone", 1)
    except PermissionError:
        fail(f"not allowed to signal process {pid} (run as its user, or root)", 1)
    click.echo(f"asked maildesk (pid {pid}) to reload; its log says whether the new settings were taken")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the documented JSON object.")
@click.pass_obj
def status(app: App, as_json: bool) -> None:
    """One screen: mailboxes, spool, outbox, open tickets, and what needs attention first."""
    from maildesk import health

    with temporary_failures_exit():
        data = health.snapshot(app.db, app.config)
    if as_json:
        emit_json(data)
    else:
        show(data)
    sys.exit(EX_OK if data["database"]["reachable"] else EX_TEMPFAIL)


def show(data: dict[str, Any]) -> None:
    click.echo(f"maildesk status at {datetime.now(UTC).isoformat(timespec='seconds')}")
    if not data["database"]["reachable"]:
        click.echo(f"database      UNREACHABLE: {data['database']['error']}")
    else:
        spooled, outbox = data["spool"], data["outbox"]
        click.echo(f"spool         {spooled['queued']} queued{_oldest(spooled)}, {spooled['failed']} failed")
        click.echo(f"outbox        {outbox['queued']} queued{_oldest(outbox)}, {outbox['failed']} failed")
        for n, box in enumerate(data["mailboxes"] or []):
            polled = "never polled" if box["seconds_since_poll"] is None \
                else f"last poll {_ago(box['seconds_since_poll'])} ago"
            error = f"; error: {box['last_error']}" if box["last_error"] else ""
            click.echo(f"{'mailboxes' if n == 0 else '':<14}{box['name']}: {polled}{error}")
        queues = data["tickets_open"] or {}
        if not queues:
            click.echo("open tickets  none")
        for n, (queue, counts) in enumerate(sorted(queues.items())):
            shown = ", ".join(f"{count} {state}" for state, count in counts.items())
            click.echo(f"{'open tickets' if n == 0 else '':<14}{queue}: {shown}")
    if data["attention"]:
        click.echo("\nneeds attention, most urgent first:")
        for n, item in enumerate(data["attention"], 1):
            click.echo(f"  {n}. {item}")
    else:
        click.echo("\nnothing needs attention")


def _oldest(queue: dict[str, Any]) -> str:
    age = queue["oldest_queued_age_seconds"]
    return f" (oldest {_ago(age)})" if age is not None and queue["queued"] else ""


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
