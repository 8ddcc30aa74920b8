"""The pipeline: ``process(inbound_id)`` is where a message meets a ticket.

One transaction: parse, classify, thread, apply to a ticket, mark the spool
row done. A crash anywhere rolls everything back and the row is simply
processed again; a message already stored (same Message-ID) is recognised
and not stored twice. An exception marks the row ``failed`` with its error,
for ``maildesk inbound retry``; it never stops the next message.

``process_many`` does the same for several messages in one transaction, so a
bulk import (``maildesk ingest --maildir``) pays for one commit per batch
instead of one per message. Should one of them fail, the batch is rolled
back and run again with a savepoint per message, so the failing message
rolls back alone and is marked failed. The daemon processes one message
per transaction: on PostgreSQL a batch would hold the threading lock for
all its messages and keep the other daemons from working in parallel.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import bindparam, select, text, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from maildesk import spool
from maildesk.config import AddressConfig, Config
from maildesk.db import Database, worth_retrying
from maildesk.desk import agent_mail, merge, notifications, outbound, routing, threader, tickets
from maildesk.desk.reply_secret import reply_secret
from maildesk.desk.tickets import IncomingMessage, Person
from maildesk.errors import TemporaryFailure
from maildesk.mail import charsets, classify
from maildesk.mail.parse import Address, ParsedMail, parse, with_envelope_sender
from maildesk.models import Inbound, Message, Ticket, appended, write_appended

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]

# Threading must see every earlier message's keys: on PostgreSQL, daemons
# sharing the work take turns at this step (the parse before it runs in parallel).
_THREADING_LOCK = 0x6D61696C


# Statements built once: SQLAlchemy then finds them compiled in its cache every time.
_CLAIM = (
    select(Inbound.id, Inbound.state, Inbound.ticket_id, Inbound.envelope, Inbound.notify)
    .where(Inbound.id.in_(bindparam("inbound_ids", expanding=True)))
    .with_for_update(skip_locked=True)
)
_STORED_ON = select(Message.ticket_id).where(Message.message_id == bindparam("message_id"))
_MARK_DONE = (
    update(Inbound.__table__).where(Inbound.__table__.c.id == bindparam("inbound_id"))
    .values(state=spool.DONE, error=None, processed_at=bindparam("processed_at"),
            ticket_id=bindparam("ticket_id"), message_id=bindparam("message_id"),
            disposition=bindparam("disposition"))
)

MAX_PARTICIPANTS_PER_MAIL = 100
"""People one mail can put on a ticket; a mail naming thousands would cost a row and an event each."""

# Automated mail that only ever answers something of ours: it never opens a ticket.
_ANSWERS_ONLY = (classify.AUTO_REPLY, classify.BOUNCE, classify.COMPLAINT, classify.LOOP)


@dataclass(frozen=True)
class Outcome:
    inbound_id: int
    state: str
    ticket_id: int | None = None
    created: bool = False
    detail: str = ""


@dataclass(frozen=True)
class _Spooled:
    """The spool row's columns that processing reads."""

    id: int
    state: str
    ticket_id: int | None
    envelope: dict[str, Any]
    notify: bool


def utc_now() -> datetime:
    return datetime.now(UTC)


def prepare(db: Database, inbound_id: int) -> ParsedMail | None:
    """Read (in a read-only transaction) and parse a spooled message before its own transaction.

    The daemon calls this outside its turn at the database, so a slow parse
    never delays the listener's spool commits (on SQLite only one writer runs
    at a time). None if the message cannot be read now; ``process`` then
    parses it itself (and records any failure).
    """
    try:
        raw = spool.raw_of(db, inbound_id)
        return parse(raw) if raw is not None else None
    except Exception as exc:  # noqa: BLE001 - process() will meet the same trouble and record it
        log.warning("cannot read a message ahead of processing", inbound_id=inbound_id, error=_describe(exc))
        return None


def process(
    db: Database, config: Config, inbound_id: int, *, clock: Clock = utc_now, parsed: ParsedMail | None = None
) -> Outcome:
    """Process one spooled message; safe to call again for the same id.

    ``parsed``: the message as ``prepare`` read it (a spool row's bytes never change).
    """
    [outcome] = process_many(db, config, [inbound_id], clock=clock,
                             parsed={inbound_id: parsed} if parsed is not None else None)
    return outcome


def process_many(
    db: Database,
    config: Config,
    inbound_ids: Sequence[int],
    *,
    clock: Clock = utc_now,
    parsed: Mapping[int, ParsedMail] | None = None,
) -> list[Outcome]:
    """Process several spooled messages in one transaction, in order; one outcome each.

    A batch first runs without a savepoint per message (they cost more than
    a small message's own writes); if a message fails, the batch is rolled
    back and run again with one savepoint each, so that message alone is
    marked ``failed``. Raises TemporaryFailure (nothing is committed) when the
    database is unavailable. Should the commit itself fail for another
    reason, the messages are tried again one transaction each, so one cannot
    sink the rest, and a message whose own commit fails is marked ``failed``.
    """
    parsed = parsed or {}
    try:
        if len(inbound_ids) > 1:
            try:
                return _run(db, config, inbound_ids, clock, parsed, isolated=False)
            except _BatchFailed as failed:
                log.info("a message of the batch failed, processing the batch again with savepoints",
                         inbound_id=failed.inbound_id, count=len(inbound_ids))
        return _run(db, config, inbound_ids, clock, parsed, isolated=True)
    except TemporaryFailure:
        raise
    except Exception as exc:  # noqa: BLE001 - the commit failed: find the culprit one by one
        if len(inbound_ids) > 1:
            log.warning("batch commit failed, processing one by one", count=len(inbound_ids))
            return [outcome for one in inbound_ids
                    for outcome in process_many(db, config, [one], clock=clock,
                                                parsed={one: parsed[one]} if one in parsed else None)]
        [inbound_id] = inbound_ids
        error = _describe(exc)
        log.error("processing failed at commit", inbound_id=inbound_id, error=error, traceback=traceback.format_exc())
        spool.mark_failed(db, inbound_id, error)
        return [Outcome(inbound_id, spool.FAILED, detail=error)]


class _BatchFailed(Exception):
    """A message failed in a batch run without savepoints; the batch must be run again."""

    def __init__(self, inbound_id: int) -> None:
        super().__init__(f"spooled message {inbound_id} failed")
        self.inbound_id = inbound_id


class _Batch:
    """The messages of one transaction: their spool rows, claimed together, and those to mark done.

    The spool rows are marked done together at the end (one statement for
    the batch); ``mark_done_now`` writes the marks so far at once, for a
    step that moves spool rows between tickets (a merge). When the messages
    were parsed ahead, their thread keys are looked up together too.
    """

    def __init__(self, session: Session, config: Config, inbound_ids: Sequence[int],
                 parsed: Mapping[int, ParsedMail], clock: Clock, secret: bytes = b"") -> None:
        self.session = session
        self.secret = secret
        """What signs agent reply addresses (``desk/reply_secret.py``); empty with no agents configured."""
        rows = session.connection().execute(_CLAIM, {"inbound_ids": list(inbound_ids)})
        self.claimed = {row.id: _Spooled(*row) for row in rows}
        self._done: list[dict[str, Any]] = []
        self.keys_ahead: threader.KeysAhead | None = None
        self.recent_mail: outbound.RecentMail | None = None
        if not any(row.state == spool.QUEUED for row in self.claimed.values()):
            return
        # Taken here, outside any savepoint: rolling one back would release it.
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _THREADING_LOCK})
        if len(parsed) < 2:
            return
        # SQLite: the batch holds the only write lock, so what it reads now stays true until it commits.
        sole_writer = session.get_bind().dialect.name == "sqlite"
        self.keys_ahead = threader.look_ahead(
            session, [key for mail in parsed.values() for key in _thread_keys(mail)], load_tickets=sole_writer)
        if sole_writer and any(row.notify for row in self.claimed.values()):
            people = [_person(a).address for mail in parsed.values() for a in (*mail.reply_to[:1], mail.sender)]
            self.recent_mail = outbound.RecentMail(session, config, people, clock())

    def participants_of(self, ticket: Ticket) -> set[str] | None:
        """The ticket's participants if the batch loaded them ahead, else None."""
        return self.keys_ahead.participants.get(ticket.id) if self.keys_ahead is not None else None

    def is_participant(self, ticket: Ticket, address: str) -> bool:
        known = self.participants_of(ticket)
        if known is None:
            return threader.is_participant(self.session, ticket.id, address)
        return bool(address) and address.lower() in known

    def done(self, inbound_id: int, outcome: Outcome, message_id: str, now: datetime) -> None:
        self.claimed[inbound_id] = replace(self.claimed[inbound_id], state=spool.DONE, ticket_id=outcome.ticket_id)
        self._done.append({"inbound_id": inbound_id, "processed_at": now, "ticket_id": outcome.ticket_id,
                           "message_id": message_id, "disposition": outcome.detail})

    def failed(self, inbound_id: int) -> None:
        """The message rolled back alone: nothing read before it is trusted any more.

        Its objects go too: a ticket it opened is gone from the database, and
        SQLite gives that ticket's id to the next one (everything before it is
        flushed, so nothing is lost).
        """
        self.claimed[inbound_id] = replace(self.claimed[inbound_id], state=spool.FAILED)
        self.keys_ahead = None
        self.recent_mail = None
        self.session.expunge_all()

    def mark_done_now(self) -> None:
        if self._done:
            self.session.connection().execute(_MARK_DONE, self._done)
            self._done = []


def _run(
    db: Database, config: Config, inbound_ids: Sequence[int], clock: Clock, parsed: Mapping[int, ParsedMail],
    *, isolated: bool,
) -> list[Outcome]:
    secret = reply_secret(db, config) if config.agents else b""  # its own transaction, before this one
    with db.session() as session:
        batch = _Batch(session, config, inbound_ids, parsed, clock, secret)
        outcomes = [_process_one(batch, config, inbound_id, clock, parsed.get(inbound_id), isolated=isolated)
                    for inbound_id in inbound_ids]
        batch.mark_done_now()
        return outcomes


def _process_one(
    batch: _Batch, config: Config, inbound_id: int, clock: Clock, parsed: ParsedMail | None, *, isolated: bool
) -> Outcome:
    """Process one message of ``batch``; ``isolated``: in a savepoint, so a failure is marked, not raised."""
    session = batch.session
    bound = log.bind(inbound_id=inbound_id)
    inbound = batch.claimed.get(inbound_id)
    if inbound is None:
        exists = session.scalar(select(Inbound.id).where(Inbound.id == inbound_id))
        if exists is not None:
            return Outcome(inbound_id, "busy", detail="another worker has it")
        return Outcome(inbound_id, "missing", detail="no such spooled message")
    if inbound.state != spool.QUEUED:
        return Outcome(inbound_id, inbound.state, inbound.ticket_id, detail="already handled")
    if isolated:  # what is pending goes in before this message's savepoint, which may yet roll back
        batch.mark_done_now()
        write_appended(session)
    try:
        with session.begin_nested() if isolated else nullcontext(), session.no_autoflush:
            if parsed is None:
                raw = spool.raw_in(session, inbound_id)
                if raw is None:
                    raise LookupError(f"the bytes of spooled message {inbound_id} are missing")
                parsed = parse(raw)
            bound = bound.bind(message_id=parsed.message_id)
            outcome, message_id = _apply(batch, config, inbound, parsed, clock(), bound)
            session.flush()
    except TemporaryFailure:
        raise
    except DBAPIError as exc:
        if exc.connection_invalidated or (isinstance(exc, OperationalError) and worth_retrying(exc)):
            raise
        if not isolated:
            raise _BatchFailed(inbound_id) from exc
        return _failed(batch, inbound_id, exc, bound)
    except Exception as exc:  # noqa: BLE001 - any bug in one message must not stop the rest
        if not isolated:
            raise _BatchFailed(inbound_id) from exc
        return _failed(batch, inbound_id, exc, bound)
    batch.done(inbound_id, outcome, message_id, clock())
    return outcome


def _failed(batch: _Batch, inbound_id: int, exc: Exception, log: Any) -> Outcome:
    error = _describe(exc)
    log.error("processing failed", error=error, traceback=traceback.format_exc())
    batch.failed(inbound_id)
    spool.mark_failed_in(batch.session, inbound_id, error)
    return Outcome(inbound_id, spool.FAILED, detail=error)


def _describe(exc: BaseException) -> str:
    """The error in words, as it is stored with the failed message (whatever characters it quotes)."""
    return charsets.storable("".join(traceback.format_exception_only(exc)).strip())


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


def _apply(
    batch: _Batch, config: Config, inbound: _Spooled, parsed: ParsedMail, now: datetime, log: Any
) -> tuple[Outcome, str]:
    """Apply the message to its ticket; the outcome and the Message-ID it was read with."""
    session = batch.session
    message_id = _stored_id(parsed.message_id)

    sender, sender_defects = sender_of(parsed, inbound.envelope)
    verdict = classify.classify(
        parsed.message,
        sender.address,
        loop_ids=[a.address for a in config.addresses],
        own_domains=[config.desk.domain],
    )
    people = _people(config, [sender, *map(_person, parsed.to), *map(_person, parsed.cc)])
    if len(people) > MAX_PARTICIPANTS_PER_MAIL:
        sender_defects.append(f"To and Cc name {len(people)} addresses; only the first "
                              f"{MAX_PARTICIPANTS_PER_MAIL} become participants")
        people = people[:MAX_PARTICIPANTS_PER_MAIL]
    mail = _incoming(parsed, verdict, sender, sender_defects)
    keys = threader.thread_keys(mail.message_id, mail.in_reply_to, mail.references)
    claimed = threader.claimed_keys(session, keys, batch.keys_ahead)
    stored_on = _stored_on(session, message_id) if message_id in claimed else None  # see threader.claimed_keys
    if stored_on is not None:
        log.info("duplicate message", ticket_id=stored_on)
        return Outcome(inbound.id, spool.DONE, stored_on,
                       detail=f"duplicate Message-ID: already on ticket #{stored_on}"), message_id

    served = served_address(config, inbound, parsed)
    not_agent = ""
    if config.agent(mail.sender.address) is not None:
        recipients = [*inbound.envelope.get("rcpt_to", []), *(p.address for p in [*mail.to, *mail.cc])]
        proof, not_agent = agent_mail.identify(session, config, batch.secret, mail, recipients=recipients,
                                               headers=parsed.headers)
        if proof is not None:
            note_address = config.desk.note_address
            disposition = agent_mail.handle(session, config, proof, mail, inbound_id=inbound.id, now=now,
                                            secret=batch.secret,
                                            to_note_address=note_address is not None and note_address in recipients)
            threader.remember_keys(session, proof.ticket.id, keys, claimed=frozenset(claimed))
            log.info("agent mail applied", ticket_id=proof.ticket.id, agent=proof.agent.address, how=proof.how)
            return Outcome(inbound.id, spool.DONE, proof.ticket.id, detail=disposition), message_id
    bounced = (outbound.find_bounced(session, verdict.bounced_message_ids)
               if verdict.kind in (classify.BOUNCE, classify.COMPLAINT) else None)
    match = _route(batch, config, mail, verdict, bounced, claimed, now)
    if match is None:
        log.info("automated mail without a ticket dropped", classification=verdict.kind, reason=verdict.reason)
        return Outcome(inbound.id, spool.DONE, None, detail=(
            f"not on any ticket: {verdict.kind} ({verdict.reason}) answering no ticket of ours"
        )), message_id

    created = match.ticket is None
    evaluation = None
    # Automated mail that only answers ours changes nothing on a ticket: no rule runs on it.
    if len(config.rules) and not (match.ticket is not None and verdict.kind in _ANSWERS_ONLY):
        evaluation = config.rules.evaluate(routing.rule_input(
            session, config, parsed, address=served.address, sender=mail.sender.address, automated=verdict.kind,
            arrived=now, ticket=match.ticket))
        routing.log_failures(evaluation, inbound_id=inbound.id)
    route = routing.resolve(session, config, evaluation, queue=served.queue, ticket=match.ticket)
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
    if evaluation is not None:
        routing.apply(session, ticket, evaluation, route, now=now, message_id=mail.message_id)

    kind = "customer" if verdict.kind == classify.NORMAL else "auto"
    tickets.add_message(session, ticket, mail, inbound_id=inbound.id, kind=kind, via=match.via, now=now)
    roles = [(mail.sender, "requester")] if created else []
    if verdict.kind == classify.NORMAL:
        roles += [(p, "cc") for p in people]
    known = set() if created else batch.participants_of(ticket)
    tickets.add_participants(session, ticket, roles, now=now, known=known)
    threader.remember_keys(session, ticket.id, keys, claimed=match.claimed_keys)
    if bounced is not None and verdict.kind == classify.COMPLAINT:
        outbound.record_complaint(session, bounced, reason=verdict.reason, now=now)
    elif bounced is not None:
        outbound.record_bounce(session, bounced, reason=verdict.reason, failed_recipients=verdict.failed_recipients,
                               permanent=verdict.permanent, now=now)
    if created and inbound.notify and route.acknowledge is not False:
        outbound.acknowledge(session, config, ticket, mail, now=now, recent=batch.recent_mail,
                             never_answer=_null_sender(inbound.envelope, parsed),
                             template=route.acknowledge if isinstance(route.acknowledge, str) else None)
    if inbound.notify and verdict.kind == classify.NORMAL and not ticket.spam and config.agents:
        notifications.notify(session, config, ticket, event="new_ticket" if created else "customer_reply", now=now,
                             secret=batch.secret, text=mail.new_text, parent=mail, copies=route.notify)
    if not_agent:
        tickets.record_event(session, ticket, "not_agent", now=now, actor=mail.sender.address, reason=not_agent)
    log.info("message applied", ticket_id=ticket.id, created=created, via=match.via, classification=verdict.kind)
    disposition = f"new ticket #{ticket.id}" if created else f"added to ticket #{ticket.id} ({match.via})"
    return Outcome(inbound.id, spool.DONE, ticket.id, created=created, detail=disposition), message_id


def _route(
    batch: _Batch,
    config: Config,
    mail: IncomingMessage,
    verdict: classify.Classification,
    bounced: outbound.BouncedMail | None,
    claimed: dict[str, int],
    now: datetime,
) -> threader.ThreadMatch | None:
    """The ticket the message goes to (or a new one, maybe linked); None: it goes nowhere."""
    session = batch.session
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
        claimed=claimed,
        is_participant=batch.is_participant,
    )
    if bounced is not None and match.ticket is None:
        match = threader.ThreadMatch(bounced.ticket, "bounce", reason="bounce of our own mail")
    if match.ticket is None and verdict.kind in _ANSWERS_ONLY:
        if match.linked_to is None or not (match.answers_closed or match.from_stranger):
            return None
        # An out-of-office to our mail, on a long-closed ticket or from an address that is not
        # on the ticket (a forwarding alias): filed there, where it changes nothing, and opens nothing.
        via = "closed-ticket" if match.answers_closed else "non-participant"
        match = threader.ThreadMatch(match.linked_to, via, reason=match.reason)
    if match.ticket is not None and match.also and verdict.kind == classify.NORMAL:
        match = _join_split_conversation(batch, match, mail.sender.address, now)
    return match


def _join_split_conversation(
    batch: _Batch, match: threader.ThreadMatch, sender: str, now: datetime
) -> threader.ThreadMatch:
    """This message links tickets that are one conversation: merge those its sender opened."""
    assert match.ticket is not None
    session = batch.session
    joined = merge.mergeable([match.ticket, *match.also], sender)
    if match.ticket not in joined or len(joined) < 2:
        others = ", ".join(f"#{t.id}" for t in match.also)
        tickets.record_event(session, match.ticket, "also_names", now=now, actor=sender,
                             reason=f"a mail from {sender or 'an unknown sender'} on this ticket also names "
                                    f"ticket {others}; not merged (only their requester's mail merges tickets)",
                             tickets=[t.id for t in match.also])
        return match
    survivor, *absorbed = joined
    batch.mark_done_now()  # the merge moves spool rows too, this batch's among them
    batch.keys_ahead = None  # and thread keys: what was looked up may name a ticket merged away
    for ticket in absorbed:
        merge.merge_into(session, survivor, ticket, actor=sender, now=now,
                         reason=f"one conversation: {match.reason} links ticket #{ticket.id} to #{survivor.id}")
    return replace(match, ticket=survivor, via=f"{match.via}, merged")


def _stored_on(session: Session, message_id: str) -> int | None:
    """The ticket a message with this Message-ID is on already, in the database or still waiting to be
    written by this transaction; None when there is none."""
    waiting = next((row["ticket_id"] for row in appended(session, Message) if row["message_id"] == message_id), None)
    if waiting is not None:
        return waiting
    return session.connection().execute(_STORED_ON, {"message_id": message_id}).scalar()


def served_address(config: Config, inbound: _Spooled, parsed: ParsedMail) -> AddressConfig:
    """The support address this mail was for: the envelope first, then To/Cc."""
    candidates = list(inbound.envelope.get("rcpt_to", [])) + [a.address for a in [*parsed.to, *parsed.cc]]
    for address in candidates:
        served = config.address_for(address)
        if served is not None:
            return served
    return config.default_address


def _thread_keys(parsed: ParsedMail) -> list[str]:
    return threader.thread_keys(_stored_id(parsed.message_id), [_stored_id(i) for i in parsed.in_reply_to],
                                [_stored_id(i) for i in parsed.references])


_ID_BYTES = 998


def _stored_id(message_id: str) -> str:
    """A Message-ID as stored: cut to the 998 bytes of an RFC 5322 line (in UTF-8, at a whole
    character), which also keeps it within what a PostgreSQL index entry can hold."""
    if len(message_id) <= _ID_BYTES // 4:  # no character takes more than four bytes
        return message_id
    return message_id.encode("utf-8", "replace")[:_ID_BYTES].decode("utf-8", "ignore")


def _people(config: Config, named: list[Person]) -> list[Person]:
    """The people a mail names, each once, without our own addresses."""
    people: dict[str, Person] = {}
    for person in named:
        if person.address and person.address not in people and config.address_for(person.address) is None:
            people[person.address] = person
    return list(people.values())


def sender_of(parsed: ParsedMail, envelope: Mapping[str, Any]) -> tuple[Person, list[str]]:
    """Who wrote: the headers' sender, or else the envelope's (MAIL FROM); and the defects to add."""
    with_envelope = with_envelope_sender(parsed, envelope.get("mail_from"))
    added = [d for d in with_envelope.defects if d not in parsed.defects]
    return _person(with_envelope.sender), added


def _null_sender(envelope: Mapping[str, Any], parsed: ParsedMail) -> str:
    """Why this mail must never be answered automatically, its reverse-path being null; "" if it is not."""
    if "mail_from" in envelope and not str(envelope["mail_from"] or "").strip().strip("<>").strip():
        return "the envelope sender is null (MAIL FROM:<>): never answered automatically (RFC 5321 §4.5.5, RFC 3834)"
    return_path = next((value for name, value in parsed.headers if name.lower() == "return-path"), None)
    if return_path is not None and not return_path.strip().strip("<>").strip():
        return "Return-Path: <> (a null sender): never answered automatically (RFC 5321 §4.5.5, RFC 3834)"
    return ""


def _incoming(parsed: ParsedMail, verdict: classify.Classification, sender: Person,
              defects: list[str]) -> IncomingMessage:
    return IncomingMessage(
        message_id=_stored_id(parsed.message_id),
        in_reply_to=[_stored_id(i) for i in parsed.in_reply_to],
        references=[_stored_id(i) for i in parsed.references],
        sender=sender,
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
        defects=[*parsed.defects, *defects],
        thread_index=next((value for name, value in parsed.headers if name.lower() == "thread-index"), None) or None,
        attachments=[
            {
                "filename": a.filename,
                "safe_filename": a.safe_filename,
                "content_type": a.content_type[:255],
                "content_id": a.content_id[:998] if a.content_id else None,
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
