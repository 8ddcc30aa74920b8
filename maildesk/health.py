"""What an admin needs to know at a glance, read from the database.

``snapshot()`` answers, in a few cheap queries: how deep the spool and the
outbox are and how old their oldest waiting item is, how many failed, each
IMAP mailbox's last successful poll and error, open tickets per queue, and
what needs attention first. ``maildesk status`` prints it; the daemon's
``/healthz``, its ``STATUS=`` line for systemd and its gauges read it too.
A database that cannot be reached is an answer, not an exception.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from maildesk import spool
from maildesk.config import Config
from maildesk.db import Database
from maildesk.desk.tickets import NEW, OPEN, PENDING
from maildesk.models import Inbound, Outbox, Ticket
from maildesk.receive import imap_state

OUTBOX_QUEUED, OUTBOX_FAILED = "queued", "failed"  # as desk.outbound names them (not imported: it loads Jinja2)
SPOOL_BEHIND_SECONDS = 300.0
"""A message waiting longer than this means processing is stopped or behind."""
OUTBOX_BEHIND_SECONDS = 3600.0
MAILBOX_SILENT_SECONDS = 3600.0


def snapshot(db: Database, config: Config, now: datetime | None = None) -> dict[str, Any]:
    """The state of the desk; ``database.reachable`` is False (with the error) when it cannot be read."""
    now = now or datetime.now(UTC)
    try:
        data = _read(db, config, now)
    except Exception as exc:  # noqa: BLE001 - an unreachable database is the answer here
        error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        data = {"database": {"reachable": False, "error": error}, "spool": None, "outbox": None,
                "mailboxes": None, "tickets_open": None}
    data["attention"] = attention(data)
    return data


def _read(db: Database, config: Config, now: datetime) -> dict[str, Any]:
    with db.reading() as connection:
        inbound = {state: (count, oldest) for state, count, oldest in connection.execute(
            select(Inbound.state, func.count(), func.min(Inbound.received_at)).group_by(Inbound.state))}
        outbox = {status: (count, oldest) for status, count, oldest in connection.execute(
            select(Outbox.status, func.count(), func.min(Outbox.created_at)).group_by(Outbox.status))}
        open_tickets: dict[str, dict[str, int]] = {}
        for queue, status, count in connection.execute(
            select(Ticket.queue, Ticket.status, func.count())
            .where(Ticket.status.in_((NEW, OPEN, PENDING))).group_by(Ticket.queue, Ticket.status)
        ):
            open_tickets.setdefault(queue, {NEW: 0, OPEN: 0, PENDING: 0})[status] = count
    mailboxes = imap_state.status(db, [box.name for box in config.imap]) if config.imap else []
    for box in mailboxes:
        polled = datetime.fromisoformat(box["last_poll_at"]) if box["last_poll_at"] else None
        box["seconds_since_poll"] = _age(polled, now)
    return {
        "database": {"reachable": True, "error": None},
        "spool": _queue(inbound, spool.QUEUED, spool.FAILED, now),
        "outbox": _queue(outbox, OUTBOX_QUEUED, OUTBOX_FAILED, now),
        "mailboxes": mailboxes,
        "tickets_open": open_tickets,
    }


def _queue(rows: dict[str, tuple[int, datetime | None]], queued: str, failed: str, now: datetime) -> dict[str, Any]:
    count, oldest = rows.get(queued, (0, None))
    return {
        "queued": count,
        "oldest_queued_at": oldest.isoformat() if oldest else None,
        "oldest_queued_age_seconds": _age(oldest, now),
        "failed": rows.get(failed, (0, None))[0],
    }


def _age(then: datetime | None, now: datetime) -> float | None:
    if then is None:
        return None
    return round(max(0.0, (now - then).total_seconds()), 3)


def attention(data: dict[str, Any]) -> list[str]:
    """What an admin should look at, most urgent first; empty when all is well."""
    if not data["database"]["reachable"]:
        return [f"the database cannot be reached: {data['database']['error']}"]
    found = []
    spooled, outbox = data["spool"], data["outbox"]
    if spooled["failed"]:
        found.append(f"{spooled['failed']} received message(s) failed processing: "
                     "maildesk inbound list --failed, then maildesk inbound retry ID")
    for box in data["mailboxes"]:
        if box["last_error"]:
            found.append(f"IMAP mailbox {box['name']} fails: {box['last_error']}")
        elif box["seconds_since_poll"] is None or box["seconds_since_poll"] > MAILBOX_SILENT_SECONDS:
            found.append(f"IMAP mailbox {box['name']} has not been polled "
                         + ("yet" if box["seconds_since_poll"] is None else "for over an hour"))
    if (spooled["oldest_queued_age_seconds"] or 0) > SPOOL_BEHIND_SECONDS:
        found.append(f"{spooled['queued']} received message(s) waiting, the oldest for "
                     f"{_duration(spooled['oldest_queued_age_seconds'])}: is a daemon processing?")
    if outbox["failed"]:
        found.append(f"{outbox['failed']} outgoing mail(s) failed: "
                     "maildesk outbox list --status failed, then maildesk outbox retry ID")
    if (outbox["oldest_queued_age_seconds"] or 0) > OUTBOX_BEHIND_SECONDS:
        found.append(f"{outbox['queued']} outgoing mail(s) waiting, the oldest for "
                     f"{_duration(outbox['oldest_queued_age_seconds'])}: is the relay reachable?")
    return found


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def status_line(data: dict[str, Any]) -> str:
    """The one line systemd shows (``systemctl status``): ``42 queued, 3 failed, outbox 2``."""
    if not data["database"]["reachable"]:
        return f"database unreachable: {data['database']['error']}"[:200]
    spooled, outbox = data["spool"], data["outbox"]
    line = f"{spooled['queued']} queued, {spooled['failed']} failed, outbox {outbox['queued']}"
    if outbox["failed"]:
        line += f" ({outbox['failed']} failed)"
    return line
