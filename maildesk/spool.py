"""The inbound spool: raw messages committed durably before anything else.

Every way mail comes in (SMTP/LMTP, IMAP, ``maildesk ingest``) ends in
``put()``, or ``put_many()`` for several messages in one commit (the SMTP
listener's group commit, see receive/spool_writer.py); only after it returns
may the sender be told "accepted". The same raw bytes offered twice are
stored once (sha256 is unique). States:

    queued ──process──> done
       │                 
       └──error──> failed ──retry──> queued
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from maildesk.db import Database
from maildesk.models import Inbound, InboundRaw, utcnow

log = structlog.get_logger(__name__)

QUEUED, DONE, FAILED = "queued", "done", "failed"


@dataclass(frozen=True)
class Spooled:
    id: int
    duplicate: bool


@dataclass(frozen=True)
class Item:
    """One message to spool: its raw bytes and where it came from."""

    raw: bytes
    source: str
    envelope: dict[str, Any] | None = None
    notify: bool = True


def put(
    db: Database,
    raw: bytes,
    *,
    source: str,
    envelope: dict[str, Any] | None = None,
    notify: bool = True,
) -> Spooled:
    """Commit ``raw`` to the spool; return its id (and whether it was already there)."""
    [spooled] = put_many(db, [Item(raw, source, envelope, notify)])
    return spooled


def put_many(db: Database, items: Sequence[Item]) -> list[Spooled]:
    """Commit every item in one transaction (one fsync); one result per item, in order.

    All or nothing: if the commit fails, none of them is stored. Bytes
    already spooled, or offered twice in ``items``, give the existing id
    with ``duplicate=True``. The new rows go in with one INSERT for the
    batch; each comes back with its sha256, which says whose id it is.
    """
    if not items:
        return []
    digests = [hashlib.sha256(item.raw).hexdigest() for item in items]
    first: dict[str, int] = {}  # the first item with each digest, in the order of the items
    for n, digest in enumerate(digests):
        first.setdefault(digest, n)
    received_at = utcnow()
    with db.session() as session:
        connection = session.connection()
        rows = [{"sha256": digest, "size": len(items[n].raw), "source": items[n].source,
                 "envelope": items[n].envelope or {}, "notify": items[n].notify, "received_at": received_at,
                 "state": QUEUED, "attempts": 0} for digest, n in first.items()]
        new_ids = {digest: new_id for new_id, digest in connection.execute(_insert_for(db), rows)}
        if new_ids:
            connection.execute(_INSERT_RAW, [{"inbound_id": new_ids[digest], "raw": items[first[digest]].raw}
                                             for digest in new_ids])
        results = []
        for n, (item, digest) in enumerate(zip(items, digests, strict=True)):
            if digest in new_ids and first[digest] == n:
                results.append(Spooled(new_ids[digest], duplicate=False))
            else:
                results.append(_stored_before(session, digest, item.envelope))
        return results


def _stored_before(session: Session, digest: str, envelope: dict[str, Any] | None) -> Spooled:
    """The row these bytes were spooled as before, or earlier in this same transaction."""
    # Skip a row the processor holds: the listener must never wait on processing.
    existing = session.scalar(select(Inbound).where(Inbound.sha256 == digest).with_for_update(skip_locked=True))
    if existing is not None:
        _remember_delivery(existing, envelope or {})
        return Spooled(existing.id, duplicate=True)
    held = session.scalar(select(Inbound.id).where(Inbound.sha256 == digest))
    assert held is not None, "conflicting row vanished"
    if envelope:
        log.info("same message delivered again while being processed; envelope only logged",
                 inbound_id=held, envelope=envelope)
    return Spooled(held, duplicate=True)


MAX_REDELIVERIES = 20


def _remember_delivery(row: Inbound, envelope: dict[str, Any]) -> None:
    """The same bytes delivered again (say, one LMTP transaction per recipient): keep its envelope.

    Recipients not seen before join ``rcpt_to`` while the message waits to be
    processed, so processing sees every address it was delivered to; every
    other envelope is listed under ``redeliveries``.
    """
    if not envelope or envelope == row.envelope:
        return
    stored = dict(row.envelope or {})
    if row.state != DONE:
        known = list(stored.get("rcpt_to", []))
        stored["rcpt_to"] = known + [r for r in envelope.get("rcpt_to", []) if r not in known]
    redeliveries = list(stored.get("redeliveries", []))
    if len(redeliveries) < MAX_REDELIVERIES:
        stored["redeliveries"] = [*redeliveries, envelope]
    row.envelope = stored


_INSERT_RAW = insert(InboundRaw)
_RAW_OF = select(InboundRaw.raw).where(InboundRaw.inbound_id == bindparam("inbound_id"))


def raw_of(db: Database, inbound_id: int) -> bytes | None:
    """A spooled message's bytes as they arrived; None if there is no such message. Takes no write lock."""
    with db.reading() as connection:
        return connection.execute(_RAW_OF, {"inbound_id": inbound_id}).scalar()


def raw_in(session: Session, inbound_id: int) -> bytes | None:
    return session.connection().execute(_RAW_OF, {"inbound_id": inbound_id}).scalar()


def _insert_for(db: Database):  # noqa: ANN202 - the dialect's Insert
    """INSERT ... ON CONFLICT (sha256) DO NOTHING RETURNING id, sha256, in the database's own dialect."""
    module = sqlite if db.is_sqlite else postgresql
    table = Inbound.__table__
    return module.insert(table).on_conflict_do_nothing(index_elements=["sha256"]).returning(table.c.id, table.c.sha256)


def queued_ids(db: Database, limit: int = 100) -> list[int]:
    """The oldest messages waiting to be processed."""
    with db.session() as session:
        query = select(Inbound.id).where(Inbound.state == QUEUED).order_by(Inbound.id).limit(limit)
        return list(session.scalars(query))


def mark_failed(db: Database, inbound_id: int, error: str) -> None:
    with db.session() as session:
        mark_failed_in(session, inbound_id, error)


def mark_failed_in(session: Session, inbound_id: int, error: str) -> None:
    """``mark_failed`` inside the caller's transaction."""
    session.execute(
        update(Inbound)
        .where(Inbound.id == inbound_id)
        .values(state=FAILED, error=error, attempts=Inbound.attempts + 1)
    )


def retry(db: Database, inbound_id: int) -> bool:
    """Put a failed message back in the queue; False if there is no such failed message."""
    with db.session() as session:
        result = session.execute(
            update(Inbound)
            .where(Inbound.id == inbound_id, Inbound.state == FAILED)
            .values(state=QUEUED)
        )
        return bool(result.rowcount)


def list_inbound(db: Database, *, state: str | None = None, limit: int = 200) -> list[Inbound]:
    with db.session() as session:
        query = select(Inbound).order_by(Inbound.id.desc()).limit(limit)
        if state:
            query = query.where(Inbound.state == state)
        rows = list(session.scalars(query))
        for row in rows:
            session.expunge(row)
        return rows


def counts(db: Database) -> dict[str, int]:
    with db.session() as session:
        rows = session.execute(select(Inbound.state, func.count()).group_by(Inbound.state))
        return {state: count for state, count in rows}
