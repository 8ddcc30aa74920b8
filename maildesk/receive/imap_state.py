"""Where the IMAP poller is in each mailbox, and its counters (table imap_mailboxes).

One row per configured mailbox, keyed by its config ``name``: the folder's
UIDVALIDITY, the highest UID handled (fetched, spooled and dealt with on the
server), UIDs skipped because the server could not deliver them, and the
counters shown by ``maildesk imap status``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from maildesk.db import Database
from maildesk.models import ImapMailbox


@dataclass(frozen=True)
class Position:
    uidvalidity: int | None
    last_uid: int
    skipped: frozenset[int]


def _row(session: Session, name: str) -> ImapMailbox:
    row = session.get(ImapMailbox, name, with_for_update=True)
    if row is None:
        row = ImapMailbox(name=name, last_uid=0, skipped_uids=[], fetched=0, deduplicated=0, failed=0)
        session.add(row)
        session.flush()
    return row


def position(db: Database, name: str) -> Position:
    try:
        with db.session() as session:
            row = _row(session, name)
            return Position(row.uidvalidity, row.last_uid, frozenset(row.skipped_uids))
    except IntegrityError:  # another daemon created the row at the same moment
        return position(db, name)


def start_at(db: Database, name: str, uidvalidity: int, last_uid: int) -> None:
    """Begin (again) in a folder: first connect, or its UIDVALIDITY changed."""
    with db.session() as session:
        row = _row(session, name)
        row.uidvalidity, row.last_uid, row.skipped_uids = uidvalidity, last_uid, []


def record_batch(db: Database, name: str, *, last_uid: int, fetched: int, deduplicated: int) -> None:
    """A batch is spooled and dealt with on the server: move the position past it."""
    with db.session() as session:
        row = _row(session, name)
        row.last_uid = max(row.last_uid, last_uid)
        row.fetched += fetched
        row.deduplicated += deduplicated


def record_skip(db: Database, name: str, uid: int) -> None:
    """The server cannot deliver this message: never ask for it again."""
    with db.session() as session:
        row = _row(session, name)
        if uid not in row.skipped_uids:
            row.skipped_uids = sorted([*row.skipped_uids, uid])
            row.failed += 1


def record_poll(db: Database, name: str, error: str | None = None) -> None:
    """A poll finished (error None: successfully) — for `maildesk imap status`."""
    with db.session() as session:
        row = _row(session, name)
        if error is None:
            row.last_poll_at, row.last_error = datetime.now(UTC), None
        else:
            row.last_error = error[:2000]


def status(db: Database, names: list[str]) -> list[dict[str, Any]]:
    """One object per configured mailbox (in config order), for the CLI."""
    with db.session() as session:
        rows = {row.name: row for row in session.scalars(select(ImapMailbox))}
    result = []
    for name in names:
        row = rows.get(name)
        result.append({
            "name": name,
            "uidvalidity": row.uidvalidity if row else None,
            "last_uid": row.last_uid if row else 0,
            "skipped_uids": list(row.skipped_uids) if row else [],
            "fetched": row.fetched if row else 0,
            "deduplicated": row.deduplicated if row else 0,
            "failed": row.failed if row else 0,
            "last_poll_at": row.last_poll_at.isoformat() if row and row.last_poll_at else None,
            "last_error": row.last_error if row else None,
        })
    return result
