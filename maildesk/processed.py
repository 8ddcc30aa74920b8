"""Counting what processing did, from the outcomes the daemon's processor gets back.

``observe()`` turns a round of ``Outcome``s into metrics: processed, failed,
deduplicated, tickets created; and, in one read of the database, what the
outcomes do not say: each message's class (automated mail), the time from
its acceptance to its ticket, and the outgoing mail processing wrote
(queued or suppressed, by kind). process() itself knows nothing of metrics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import func, select

from maildesk import spool
from maildesk.db import Database
from maildesk.metrics import Metrics
from maildesk.models import Inbound, Message, Outbox
from maildesk.process import Outcome

_DUPLICATE = "duplicate Message-ID"
_ALREADY_HANDLED = "already handled"
_NO_TICKET = re.compile(r"^not on any ticket: (\w+) ")
_NORMAL = "normal"
_SUPPRESSED = "suppressed"


@dataclass
class Observed:
    """How far the outbox has been counted (rows above ``outbox_id`` are new)."""

    outbox_id: int | None = None


def outbox_high_water(db: Database) -> int:
    """The newest outbox row now: mail written before the daemon started is not its to count."""
    with db.reading() as connection:
        return int(connection.execute(select(func.coalesce(func.max(Outbox.id), 0))).scalar_one())


def observe(db: Database, outcomes: list[Outcome], metrics: Metrics, seen: Observed) -> None:
    # "already handled": another daemon processed it between our listing and our claim.
    done = [o for o in outcomes if o.state == spool.DONE and o.detail != _ALREADY_HANDLED]
    metrics.processed.inc(len(done))
    metrics.failed.inc(sum(o.state == spool.FAILED and o.detail != _ALREADY_HANDLED for o in outcomes))
    metrics.deduplicated.inc(sum(o.detail.startswith(_DUPLICATE) for o in done))
    metrics.tickets_created.inc(sum(o.created for o in done))
    for outcome in done:
        unticketed = _NO_TICKET.match(outcome.detail)
        if unticketed:
            metrics.automated.labels(**{"class": unticketed.group(1)}).inc()
    filed = [o.inbound_id for o in done if o.ticket_id is not None and not o.detail.startswith(_DUPLICATE)]
    tickets = sorted({o.ticket_id for o in done if o.ticket_id is not None})
    if not filed and not tickets:
        return
    with db.reading() as connection:
        if seen.outbox_id is None:
            seen.outbox_id = 0
        if filed:
            rows = connection.execute(
                select(Inbound.received_at, Inbound.processed_at, Message.classification)
                .join(Message, Message.inbound_id == Inbound.id, isouter=True)
                .where(Inbound.id.in_(filed)))
            for received_at, processed_at, classification in rows:
                if received_at is not None and processed_at is not None:
                    metrics.accepted_to_ticket_seconds.observe(max(0.0, (processed_at - received_at).total_seconds()))
                if classification and classification != _NORMAL:
                    metrics.automated.labels(**{"class": classification}).inc()
        if tickets:
            rows = connection.execute(
                select(Outbox.id, Outbox.kind, Outbox.status)
                .where(Outbox.id > seen.outbox_id, Outbox.ticket_id.in_(tickets)))
            for outbox_id, kind, status in rows:
                metrics.outbox.labels(status=_SUPPRESSED if status == _SUPPRESSED else "queued", kind=kind).inc()
                seen.outbox_id = max(seen.outbox_id, outbox_id)
