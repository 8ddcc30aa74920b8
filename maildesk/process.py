"""The pipeline: ``process(inbound_id)`` is where a message meets a ticket.

One transaction: parse, classify, thread, apply to a ticket, mark the spool
row done. A crash anywhere rolls everything back and the row is simply
processed again; a message already stored (same Message-ID) is recognised
and not stored twice. An exception marks the row ``failed`` with its error,
for ``maildesk inbound retry``; it never stops the next message.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from maildesk import spool
from maildesk.config import AddressConfig, Config
from maildesk.db import Database
from maildesk.desk import outbound, threader, tickets
from maildesk.desk.tickets import IncomingMessage, Person
from maildesk.errors import TemporaryFailure
from maildesk.mail import classify
from maildesk.mail.parse import Address, ParsedMail, parse
from maildesk.models import Inbound, Message

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]

# Threading must see every earlier message's keys: on PostgreSQL, daemons
# sharing the work take turns at this step (the parse before it runs in parallel).
_THREADING_LOCK = 0x6D61696C


@dataclass(frozen=True)
class Outcome:
    inbound_id: int
    state: str
    ticket_id: int | None = None
    created: bool = False
    detail: str = ""


def utc_now() -> datetime:
    return datetime.now(UTC)


def process(db: Database, config: Config, inbound_id: int, *, clock: Clock = utc_now) -> Outcome:
    """Process one spooled message; safe to call again for the same id."""
    bound = log.bind(inbound_id=inbound_id)
    try:
        with db.session() as session:
            inbound = session.get(Inbound, inbound_id, with_for_update={"skip_locked": True})
            if inbound is None:
                exists = session.scalar(select(Inbound.id).where(Inbound.id == inbound_id))
                if exists is not None:
                    return Outcome(inbound_id, "busy", detail="another worker has it")
                return Outcome(inbound_id, "missing", detail="no such spooled message")
            if inbound.state != spool.QUEUED:
                return Outcome(inbound_id, inbound.state, inbound.ticket_id, detail="already handled")
            with session.no_autoflush:
                outcome = _apply(session, config, inbound, clock(), bound)
            inbound.state = spool.DONE
            inbound.processed_at = clock()
            inbound.error = None
            inbound.ticket_id = outcome.ticket_id
            return outcome
    except TemporaryFailure:
        raise
    except Exception as exc:  # noqa: BLE001 - any bug in one message must not stop the rest
        error = "".join(traceback.format_exception_only(exc)).strip()
        bound.error("processing failed", error=error, traceback=traceback.format_exc())
        spool.mark_failed(db, inbound_id, error)
        return Outcome(inbound_id, spool.FAILED, detail=error)


def process_queued(db: Database, config: Config, *, clock: Clock = utc_now, limit: int | None = None) -> list[Outcome]:
    """Process every queued message, oldest first, until none is left (or ``limit``)."""
    outcomes: list[Outcome] = []
    while limit is None or len(outcomes) < limit:
        batch = spool.queued_ids(db, limit=100)
        batch = [i for i in batch if i not in {o.inbound_id for o in outcomes}]
        if not batch:
            break
        for inbound_id in batch:
            outcomes.append(process(db, config, inbound_id, clock=clock))
            if limit is not None and len(outcomes) >= limit:
                break
    return outcomes


def _apply(session: Session, config: Config, inbound: Inbound, now: datetime, log: Any) -> Outcome:
    parsed = parse(inbound.raw)
    inbound.message_id = parsed.message_id[:998]
    log = log.bind(message_id=parsed.message_id)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _THREADING_LOCK})

    stored_on = session.scalar(select(Message.ticket_id).where(Message.message_id == parsed.message_id))
    if stored_on is not None:
        log.info("duplicate message", ticket_id=stored_on)
        return Outcome(inbound.id, spool.DONE, stored_on, detail="duplicate Message-ID")

    verdict = classify.classify(
        parsed.message,
        parsed.sender.address,
        loop_ids=[a.address for a in config.addresses],
        own_domains=[config.desk.domain],
    )
    mail = _incoming(parsed, verdict)
    served = _served_address(config, inbound, parsed)
    match = threader.find_thread(
        session,
        message_id=mail.message_id,
        in_reply_to=mail.in_reply_to,
        references=mail.references,
        subject=mail.subject,
        sender=mail.sender.address,
        tag_prefix=config.desk.tag_prefix,
        reopen_window=timedelta(days=config.desk.reopen_window_days),
        now=now,
    )
    bounced = outbound.find_bounced(session, verdict.bounced_message_ids) if verdict.kind == classify.BOUNCE else None
    if bounced is not None and match.ticket is None:
        match = threader.ThreadMatch(bounced.ticket, "bounce", reason="bounce of our own mail")
    if match.ticket is None and verdict.kind in (classify.LOOP, classify.BOUNCE):
        log.info("automated mail without a ticket dropped", classification=verdict.kind, reason=verdict.reason)
        return Outcome(inbound.id, spool.DONE, None, detail=f"{verdict.kind}: {verdict.reason}")

    created = match.ticket is None
    if created:
        ticket = tickets.open_ticket(
            session,
            mail,
            subject=threader.strip_subject_tag(mail.subject, config.desk.tag_prefix),
            queue=served.queue,
            support_address=served.address,
            now=now,
            linked_to=match.linked_to,
            reason=match.reason,
        )
    else:
        ticket = match.ticket
        assert ticket is not None
        if verdict.kind == classify.NORMAL:
            tickets.customer_wrote(session, ticket, actor=mail.sender.address, now=now)

    kind = "customer" if verdict.kind == classify.NORMAL else "auto"
    message = tickets.add_message(session, ticket, mail, inbound_id=inbound.id, kind=kind, via=match.via, now=now)
    people = [(mail.sender, "requester")] if created else []
    if verdict.kind == classify.NORMAL:
        people += [(p, "cc") for p in [mail.sender, *mail.to, *mail.cc] if config.address_for(p.address) is None]
    tickets.add_participants(session, ticket, people, now=now, new_ticket=created)
    threader.remember_keys(
        session, ticket.id, threader.thread_keys(mail.message_id, mail.in_reply_to, mail.references),
        claimed=match.claimed_keys,
    )
    if bounced is not None:
        outbound.record_bounce(session, bounced, reason=verdict.reason, failed_recipients=verdict.failed_recipients,
                               permanent=verdict.permanent, now=now)
    if created and inbound.notify:
        thread_index = parsed.message.get("Thread-Index")
        outbound.acknowledge(session, config, ticket, message, now=now,
                             thread_index=str(thread_index) if thread_index else None)
    log.info("message applied", ticket_id=ticket.id, created=created, via=match.via, classification=verdict.kind)
    return Outcome(inbound.id, spool.DONE, ticket.id, created=created, detail=match.via)


def _served_address(config: Config, inbound: Inbound, parsed: ParsedMail) -> AddressConfig:
    """The support address this mail was for: the envelope first, then To/Cc."""
    candidates = list(inbound.envelope.get("rcpt_to", [])) + [a.address for a in [*parsed.to, *parsed.cc]]
    for address in candidates:
        served = config.address_for(address)
        if served is not None:
            return served
    return config.default_address


def _incoming(parsed: ParsedMail, verdict: classify.Classification) -> IncomingMessage:
    return IncomingMessage(
        message_id=parsed.message_id[:998],
        in_reply_to=[i[:998] for i in parsed.in_reply_to],
        references=[i[:998] for i in parsed.references],
        sender=_person(parsed.sender),
        to=[_person(a) for a in parsed.to],
        cc=[_person(a) for a in parsed.cc],
        reply_to=[_person(a) for a in parsed.reply_to],
        subject=parsed.subject,
        date=parsed.date,
        text=parsed.text,
        html=parsed.html,
        new_text=parsed.new_text,
        classification=verdict.kind,
        classification_reason=verdict.reason,
        defects=list(parsed.defects),
        attachments=[
            {
                "filename": a.filename,
                "safe_filename": a.safe_filename,
                "content_type": a.content_type[:255],
                "content_id": a.content_id,
                "inline": a.inline,
                "size": a.size,
                "sha256": a.sha256,
                "content": a.content,
            }
            for a in parsed.attachments
        ],
    )


def _person(address: Address) -> Person:
    return Person(address=address.address.lower()[:320], name=address.name)
