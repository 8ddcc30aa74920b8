"""Decide what mail goes out for a ticket, render it, and put it in the outbox.

Everything runs in the caller's session, so an outbox row commits together
with the ticket change that caused it (or not at all). Nothing here touches
the network: ``send.py`` drains the outbox.

The guards against answering machines, in order:

* only a ``normal`` customer mail is acknowledged (process.py checks the
  class; ``acknowledge`` checks it again);
* never to a robot address (mailer-daemon, noreply..., ``outbound.robot_pattern``)
  nor to one of our own addresses;
* never to a recipient who reported our mail as abuse (an ARF complaint);
* at most ``limits.per_recipient`` automatic customer mails (ack, update,
  solved) per recipient and ``limits.per_ticket`` per ticket in their windows.

A mail a guard stops is still written, with status ``suppressed`` and the
reason, and the ticket's history says so. A mail that is queued is also
stored as an outbound Message on the ticket, and its Message-ID becomes a
thread key, so the customer's reply to it finds the ticket.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from maildesk.config import AddressConfig, Config
from maildesk.desk import threader
from maildesk.desk.tickets import IncomingMessage, Person, record_event
from maildesk.mail.addrspec import is_mailbox
from maildesk.mail.classify import NORMAL, is_robot_address
from maildesk.mail.compose import Outgoing, OutgoingAttachment, compose_bytes, new_message_id, references_for
from maildesk.mail.quotes import REPLY_ABOVE_MARKER
from maildesk.models import (
    QUERY_CHUNK, Complainer, Message, Outbox, Ticket, append_later, append_row, append_rows, chunks,
)
from maildesk.templating import renderer

QUEUED, SENT, FAILED, SUPPRESSED = "queued", "sent", "failed", "suppressed"
STATUSES = (QUEUED, SENT, FAILED, SUPPRESSED)

AUTO_SUBMITTED = {
    "ack": "auto-replied",
    "update": "auto-generated",
    "solved": "auto-generated",
    "notification": "auto-generated",
    "sla_reminder": "auto-generated",
    "sla_breach": "auto-generated",
    "agent_reply": None,
    "command_result": "auto-replied",
}
RATE_LIMITED = ("ack", "update", "solved")
"""Automatic mail to customers: what an auto-responder could ping-pong with."""
MESSAGE_KIND = {"agent_reply": "agent", "notification": "system", "sla_reminder": "system", "sla_breach": "system",
                "command_result": "system"}
TO_AGENTS = ("notification", "command_result")
"""Mail maildesk sends to an agent: a reply to one proves the agent is answering (desk/agent_mail.py)."""


def context(
    config: Config,
    ticket: Ticket,
    served: AddressConfig,
    *,
    message_text: str = "",
    agent: Person | None = None,
    event: str = "",
    change: tuple[str, str] | None = None,
    sla: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The variables every template sees; each is always present, so a typo is an error.

    ``extra``: variables of one kind of mail (a notification's ``history``, a
    command result's ``applied`` and ``refused``).
    """
    return {
        **(extra or {}),
        "ticket": {
            "id": ticket.id, "subject": ticket.subject, "status": ticket.status,
            "queue": ticket.queue, "priority": ticket.priority,
            "assignee": ticket.assignee or "", "tags": list(ticket.tags or []),
        },
        "tag": threader.subject_tag(ticket.id, config.desk.tag_prefix),
        "customer": {"name": ticket.requester_name, "address": ticket.requester},
        "queue_name": served.display_name,
        "support_address": served.address,
        "reply_marker": REPLY_ABOVE_MARKER,
        "message": {"text": message_text},
        "agent": {"name": agent.name if agent else "", "address": agent.address if agent else ""},
        "event": event,
        "change": {"old": change[0] if change else "", "new": change[1] if change else ticket.status},
        "sla": {"target": "", "due_at": "", "minutes_left": 0, "minutes_overdue": 0, **(sla or {})},
    }


def served_address(config: Config, ticket: Ticket) -> AddressConfig:
    return config.address_for(ticket.support_address) or config.default_address


def acknowledge(
    session: Session,
    config: Config,
    ticket: Ticket,
    mail: IncomingMessage,
    *,
    now: datetime,
    recent: RecentMail | None = None,
    never_answer: str = "",
    template: str | None = None,
) -> Outbox | None:
    """Acknowledge a new ticket opened by ``mail``, unless it was written by software.

    ``never_answer``: why this mail must not be answered automatically at all
    (a null sender); the acknowledgement is then kept as ``suppressed`` with it.
    ``template``: the template to write it with instead of ``ack`` (a rule's choice).
    """
    if mail.classification != NORMAL:
        return None
    to = reply_address(mail)
    if mail.reply_to and to is mail.sender:
        record_event(session, ticket, "reply_to_ignored", now=now,
                     reason=f"Reply-To {mail.reply_to[0].address!r} is not a deliverable address; "
                            f"answered to From instead", reply_to=mail.reply_to[0].address)
    return enqueue(session, config, ticket, "ack", to=[to], now=now, parent=mail, message_text=mail.new_text,
                   recent=recent, suppress=never_answer, template=template)


def reply_address(mail: IncomingMessage) -> Person:
    """Whom an answer to ``mail`` goes to: its first Reply-To when that is a clean address, else From."""
    if mail.reply_to and is_mailbox(mail.reply_to[0].address):
        return mail.reply_to[0]
    return mail.sender


def status_changed(
    session: Session,
    config: Config,
    ticket: Ticket,
    *,
    old: str,
    new: str,
    now: datetime,
    note: str = "",
) -> Outbox | None:
    """Tell the requester about a status change: ``solved`` mail for solved, ``update`` for
    open/pending; nothing for new or closed (closing a solved ticket is housekeeping)."""
    if old == new or new in ("new", "closed"):
        return None
    last = session.scalar(
        select(Message).where(Message.ticket_id == ticket.id, Message.direction == "in", Message.kind == "customer")
        .order_by(Message.id.desc()).limit(1)
    )
    return enqueue(
        session, config, ticket, "solved" if new == "solved" else "update",
        to=[Person(ticket.requester, ticket.requester_name)], now=now, parent=last,
        message_text=note, change=(old, new),
    )


def enqueue(
    session: Session,
    config: Config,
    ticket: Ticket,
    kind: str,
    *,
    to: list[Person],
    now: datetime,
    parent: Message | IncomingMessage | None = None,
    parent_thread_index: str | None = None,
    recent: RecentMail | None = None,
    suppress: str = "",
    template: str | None = None,
    cc: list[Person] | None = None,
    reply_to: list[Person] | None = None,
    from_name: str | None = None,
    attachments: list[OutgoingAttachment] | None = None,
    **variables: Any,
) -> Outbox:
    """Render, compose and write one outbox row (``queued`` or ``suppressed``).

    ``suppress``: a reason the caller already has to keep the mail back;
    ``from_name``: the display name of the support address, if not the queue's.
    Returns a copy of the row for reading, outside the session.
    """
    served = served_address(config, ticket)
    cc = cc or []
    from_name = from_name or served.display_name
    rendered = renderer(config.outbound.templates).render_or_builtin(
        template or kind, context(config, ticket, served, **variables), queue=ticket.queue,
        language=served.language, builtin=kind,
    )
    parent_thread_index = parent_thread_index or ticket.thread_index  # one Outlook conversation per ticket
    tag = threader.subject_tag(ticket.id, config.desk.tag_prefix)
    subject = rendered.subject if tag in rendered.subject else f"{tag} {rendered.subject}"
    message_id = new_message_id(config.desk.domain)
    references = references_for(parent.message_id, list(parent.references)) if parent else []
    reason = suppress or _suppression(session, config, ticket, kind, [*to, *cc], now, recent)
    raw = b""
    if not reason:
        try:
            raw = compose_bytes(Outgoing(
                from_address=served.address, from_name=from_name,
                to=[(p.name, p.address) for p in to], subject=subject,
                cc=[(p.name, p.address) for p in cc], reply_to=[(p.name, p.address) for p in reply_to or []],
                attachments=attachments or [],
                text=rendered.text, html=rendered.html, message_id=message_id, date=now,
                in_reply_to=parent.message_id if parent else None, references=references,
                auto_submitted=AUTO_SUBMITTED[kind], bulk=AUTO_SUBMITTED[kind] is not None,
                loop=served.address, parent_thread_index=parent_thread_index, topic=ticket.subject,
            ))
        except ValueError as exc:
            reason = str(exc)
    values: dict[str, Any] = dict(
        ticket_id=ticket.id, kind=kind, to=[p.address for p in [*to, *cc]], recipient=to[0].address.lower()[:320],
        subject=subject, message_id=message_id, raw=raw, status=SUPPRESSED if reason else QUEUED,
        attempts=0, reason=reason, next_attempt_at=now, created_at=now,
    )
    row = Outbox(id=append_row(session, Outbox, values), **values)
    recipients = ", ".join(p.address for p in [*to, *cc])
    if reason:
        record_event(session, ticket, "mail_suppressed", now=now, reason=f"{kind} to {recipients} not sent: {reason}",
                     outbox_id=row.id, kind=kind, to=row.to)
        return row
    append_later(session, Message, dict(
        ticket_id=ticket.id, inbound_id=None, direction="out", kind=MESSAGE_KIND.get(kind, "auto"),
        message_id=message_id, in_reply_to=[parent.message_id] if parent else [], references=references,
        from_address=served.address, from_name=from_name,
        to=[{"name": p.name, "address": p.address} for p in to], cc=[{"name": p.name, "address": p.address} for p in cc],
        reply_to=[{"name": p.name, "address": p.address} for p in reply_to or []], subject=subject,
        date=now, body_text=rendered.text, body_html=rendered.html, new_text=rendered.text,
        classification=NORMAL, classification_reason="sent by maildesk", defects=[], created_at=now,
    ))
    threader.remember_keys(session, ticket.id, [message_id], claimed=frozenset())  # a fresh id: nobody has it
    if recent is not None and kind in RATE_LIMITED:
        recent.add(to[0].address.lower())
    record_event(session, ticket, "mail_queued", now=now, reason=f"{kind} to {recipients}",
                 outbox_id=row.id, kind=kind, message_id=message_id)
    return row


_COMPLAINED = select(Complainer.address).where(Complainer.address.in_(bindparam("addresses", expanding=True))).limit(1)
_RECENT_AUTOMATIC = select(func.count(Outbox.id)).where(
    Outbox.kind.in_(RATE_LIMITED), Outbox.status != SUPPRESSED, Outbox.created_at >= bindparam("since")
)
_SENT_TO_RECIPIENT = _RECENT_AUTOMATIC.where(Outbox.recipient == bindparam("recipient"))
_SENT_ON_TICKET = _RECENT_AUTOMATIC.where(Outbox.ticket_id == bindparam("ticket_id"))


_SENT_TO_EACH = (
    _RECENT_AUTOMATIC.with_only_columns(Outbox.recipient, func.count(Outbox.id))
    .where(Outbox.recipient.in_(bindparam("recipients", expanding=True)))
    .group_by(Outbox.recipient)
)


class RecentMail:
    """The automatic mail each recipient of a batch got in the rate-limit window, counted at once.

    ``enqueue`` reads the count here instead of asking the database, and adds
    what it queues. Only for a transaction no one else can write to before it
    commits (SQLite's single writer). Counted from the batch's start, the
    window reaches back the few seconds of the batch further than each mail's
    own: it can hold back more mail, never less.
    """

    def __init__(self, session: Session, config: Config, recipients: list[str], now: datetime) -> None:
        since = now - timedelta(minutes=config.limits.per_recipient_minutes)
        self._sent = dict.fromkeys(recipients, 0)
        for part in chunks(list(self._sent)):
            rows = session.connection().execute(_SENT_TO_EACH, {"since": since, "recipients": part})
            self._sent.update((recipient, count) for recipient, count in rows)

    def sent_to(self, recipient: str) -> int | None:
        """How many, or None for a recipient this batch did not expect."""
        return self._sent.get(recipient)

    def add(self, recipient: str) -> None:
        if recipient in self._sent:
            self._sent[recipient] += 1


def _suppression(session: Session, config: Config, ticket: Ticket, kind: str, to: list[Person], now: datetime,
                 recent: RecentMail | None = None) -> str:
    """Why this mail must not go out, or "" when it may."""
    for person in to:
        if config.address_for(person.address) is not None:
            return f"{person.address} is one of our own addresses"
        if is_robot_address(person.address, config.outbound.robot_pattern):
            return f"{person.address or '<>'} looks like software (robot address), never answered"
        if not is_mailbox(person.address):
            return f"{person.address!r} is not a deliverable address"
    if kind not in RATE_LIMITED:
        return ""
    complained = session.connection().execute(
        _COMPLAINED, {"addresses": [p.address.lower() for p in to]}).scalar()
    if complained is not None:
        return f"{complained} reported our mail as abuse: no automatic mail goes there"
    limits = config.limits
    since = now - timedelta(minutes=limits.per_recipient_minutes)
    # On the connection: the ORM session's autoflush and bookkeeping cost more than this COUNT.
    connection = session.connection()
    recipient = to[0].address.lower()
    sent = recent.sent_to(recipient) if recent is not None else None
    if sent is None:
        sent = connection.execute(_SENT_TO_RECIPIENT, {"recipient": recipient, "since": since}).scalar() or 0
    if sent >= limits.per_recipient:
        return (f"rate limit: {sent} automatic mails to {to[0].address} in the last "
                f"{limits.per_recipient_minutes:g} minutes (limit {limits.per_recipient})")
    if kind == "ack":
        return ""  # the first automatic mail of a ticket just opened: nothing on it to count yet
    since = now - timedelta(minutes=limits.per_ticket_minutes)
    sent = connection.execute(_SENT_ON_TICKET, {"ticket_id": ticket.id, "since": since}).scalar() or 0
    if sent >= limits.per_ticket:
        return (f"rate limit: {sent} automatic mails on this ticket in the last "
                f"{limits.per_ticket_minutes:g} minutes (limit {limits.per_ticket})")
    return ""


# -- what the sender and bounces report back -----------------------------------


@dataclass(frozen=True)
class BouncedMail:
    ticket: Ticket
    outbox: list[Outbox]
    message_ids: list[str]


def find_bounced(session: Session, message_ids: tuple[str, ...] | list[str]) -> BouncedMail | None:
    """The ticket of our own outbound mail named in a bounce, if any of the ids is ours."""
    if not message_ids:
        return None
    ids = list(message_ids)[:QUERY_CHUNK]  # a bounce returns one mail: a longer list is junk
    rows = list(session.scalars(select(Outbox).where(Outbox.message_id.in_(ids)).order_by(Outbox.id)))
    ticket_id = next((r.ticket_id for r in rows if r.ticket_id is not None), None)
    if ticket_id is None:
        ticket_id = session.scalar(
            select(Message.ticket_id).where(Message.message_id.in_(ids), Message.direction == "out").limit(1)
        )
    if ticket_id is None:
        return None
    ticket = session.get(Ticket, ticket_id)
    assert ticket is not None
    return BouncedMail(ticket, [r for r in rows if r.ticket_id == ticket_id], ids)


def record_bounce(
    session: Session,
    bounced: BouncedMail,
    *,
    reason: str,
    failed_recipients: tuple[str, ...],
    permanent: bool,
    now: datetime,
) -> None:
    """A bounce of our mail in the ticket's history (never a reopen): ``delivery_failed``,
    or ``delivery_delayed`` for a notice that the mail is still being tried."""
    for row in bounced.outbox:
        if permanent and row.status == SENT:
            row.status = FAILED
            row.last_error = f"bounced after delivery to the relay: {reason}"
    record_event(
        session, bounced.ticket, "delivery_failed" if permanent else "delivery_delayed", now=now,
        reason=f"{'bounce' if permanent else 'delay notice'} for our mail {', '.join(bounced.message_ids)}"
               + (f" to {', '.join(failed_recipients)}" if failed_recipients else "") + f": {reason}",
        message_ids=bounced.message_ids, failed_recipients=list(failed_recipients), permanent=permanent,
        outbox_ids=[r.id for r in bounced.outbox],
    )


def record_complaint(session: Session, complained: BouncedMail, *, reason: str, now: datetime) -> None:
    """An abuse report (ARF) about our mail, in the history of the ticket it came from (never a reopen);
    its recipients get no automatic mail from now on (``complainers``)."""
    recipients = sorted({address.lower() for row in complained.outbox for address in row.to})
    connection = session.connection()
    known = set(connection.execute(select(Complainer.address).where(Complainer.address.in_(recipients))).scalars())
    append_rows(session, Complainer, [{"address": address, "reported_at": now, "ticket_id": complained.ticket.id}
                                      for address in recipients if address not in known])
    record_event(
        session, complained.ticket, "complaint_received", now=now,
        reason=f"abuse report about our mail {', '.join(complained.message_ids)}"
               + (f" to {', '.join(recipients)}" if recipients else "") + f": {reason}",
        message_ids=complained.message_ids, recipients=recipients, outbox_ids=[r.id for r in complained.outbox],
    )


def delivery_failed(session: Session, row: Outbox, error: str, *, now: datetime) -> None:
    """The sender gave up on ``row``: say so on its ticket."""
    ticket = session.get(Ticket, row.ticket_id) if row.ticket_id is not None else None
    if ticket is not None:
        record_event(session, ticket, "delivery_failed", now=now,
                     reason=f"{row.kind} to {', '.join(row.to)} could not be delivered: {error}",
                     outbox_id=row.id, message_id=row.message_id, attempts=row.attempts, permanent=True)


def delivered(session: Session, row: Outbox, *, now: datetime) -> None:
    ticket = session.get(Ticket, row.ticket_id) if row.ticket_id is not None else None
    if ticket is not None:
        record_event(session, ticket, "mail_sent", now=now, reason=f"{row.kind} to {', '.join(row.to)}",
                     outbox_id=row.id, message_id=row.message_id, attempts=row.attempts)


def requeue(session: Session, outbox_id: int, *, now: datetime) -> str:
    """Make a failed (or waiting) mail due now with a fresh count of attempts; "" or why not."""
    row = session.get(Outbox, outbox_id)
    if row is None:
        return "no such mail"
    if row.status == SUPPRESSED:
        return f"was suppressed and is not sent: {row.reason}"
    if row.status == SENT:
        return "was already sent"
    row.status, row.attempts, row.next_attempt_at, row.reason = QUEUED, 0, now, ""
    ticket = session.get(Ticket, row.ticket_id) if row.ticket_id is not None else None
    if ticket is not None:
        record_event(session, ticket, "mail_requeued", now=now, reason=f"{row.kind} to {', '.join(row.to)} queued again",
                     outbox_id=row.id)
    return ""
