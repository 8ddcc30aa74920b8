"""The database tables, as SQLAlchemy 2 typed ORM models.

Each class is one table; the Alembic migrations in ``maildesk/migrations``
create exactly these (a test compares the two). Times are stored as
timezone-aware UTC.

``append_row`` / ``append_rows`` write rows that are only ever appended
(messages, events, thread keys...) with one prepared INSERT, bypassing the
ORM's unit of work, which costs several times the INSERT itself.
``append_later`` holds rows that are rarely read while the transaction runs
(messages and their attachments, ticket history, thread keys) and writes
them all at once before it commits.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from sqlalchemy import (
    JSON,
    event,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Insert,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    bindparam,
    false,
    insert,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, ORMExecuteState, Session, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


MAX_ID = 2**31 - 1
"""The largest id a row can have: ids are 32-bit integers on PostgreSQL. A larger number names nothing."""
intpk = Annotated[int, mapped_column(Integer, primary_key=True, autoincrement=True)]
timestamp = Annotated[datetime, mapped_column(UTCDateTime, default=utcnow)]
optional_time = Annotated[datetime | None, mapped_column(UTCDateTime)]
address = Annotated[str, mapped_column(String(320))]
short = Annotated[str, mapped_column(String(64))]
json_list = Annotated[list[Any], mapped_column(JSON, default=list)]

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Inbound(Base):
    """The inbound spool: every message as it arrived (its bytes in ``InboundRaw``), kept before anything else."""

    __tablename__ = "inbound"

    id: Mapped[intpk]
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[short]
    envelope: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    notify: Mapped[bool] = mapped_column(Boolean, default=True)
    received_at: Mapped[timestamp]
    state: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    disposition: Mapped[str | None] = mapped_column(Text)
    """What processing did with it, in words: "new ticket #3", "not on any ticket: ..."."""
    processed_at: Mapped[optional_time]
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    message_id: Mapped[str | None] = mapped_column(String(998))


class InboundRaw(Base):
    """A spooled message's raw bytes: written once, never updated.

    Apart from its ``inbound`` row because SQLite rewrites a whole row on
    every UPDATE, and the spool row is updated when the message is processed.
    """

    __tablename__ = "inbound_raw"

    inbound_id: Mapped[int] = mapped_column(ForeignKey("inbound.id"), primary_key=True)
    raw: Mapped[bytes] = mapped_column(LargeBinary)


class Ticket(Base):
    __tablename__ = "tickets"

    id: Mapped[intpk]
    subject: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="new", index=True)
    queue: Mapped[short]
    priority: Mapped[str] = mapped_column(String(16), default="normal")
    requester: Mapped[str] = mapped_column(String(320), index=True)
    requester_name: Mapped[str] = mapped_column(Text, default="")
    assignee: Mapped[str | None] = mapped_column(String(320), index=True)
    tags: Mapped[json_list]
    sla_policy: Mapped[str | None] = mapped_column(String(255))
    """The SLA policy a rule chose for the ticket (else the queue's applies)."""
    spam: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """A rule called it spam: kept, closed, never acknowledged, never reopened by mail."""
    support_address: Mapped[address]
    linked_ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    thread_index: Mapped[str | None] = mapped_column(String(255))
    """The customer's Outlook Thread-Index, parent of every mail we send on the ticket."""
    created_at: Mapped[timestamp]
    updated_at: Mapped[timestamp]
    solved_at: Mapped[optional_time]
    closed_at: Mapped[optional_time]

    messages: Mapped[list[Message]] = relationship(
        back_populates="ticket", order_by="Message.id", foreign_keys="Message.ticket_id"
    )
    participants: Mapped[list[Participant]] = relationship(order_by="Participant.id")
    events: Mapped[list[TicketEvent]] = relationship(order_by="TicketEvent.id")


class Message(Base):
    """One mail on a ticket, inbound or outbound, with what threading needs."""

    __tablename__ = "messages"

    id: Mapped[intpk]
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound.id"), unique=True)
    direction: Mapped[str] = mapped_column(String(3))
    kind: Mapped[str] = mapped_column(String(16))
    message_id: Mapped[str] = mapped_column(String(998), unique=True)
    in_reply_to: Mapped[json_list]
    references: Mapped[json_list]
    from_address: Mapped[address]
    from_name: Mapped[str] = mapped_column(Text, default="")
    to: Mapped[json_list]
    cc: Mapped[json_list]
    reply_to: Mapped[json_list]
    subject: Mapped[str] = mapped_column(Text, default="")
    date: Mapped[optional_time]
    body_text: Mapped[str] = mapped_column(Text, default="")
    body_html: Mapped[str | None] = mapped_column(Text)
    new_text: Mapped[str] = mapped_column(Text, default="")
    classification: Mapped[str] = mapped_column(String(16), default="normal")
    classification_reason: Mapped[str] = mapped_column(Text, default="")
    defects: Mapped[json_list]
    created_at: Mapped[timestamp]

    ticket: Mapped[Ticket] = relationship(back_populates="messages", foreign_keys=[ticket_id])
    attachments: Mapped[list[Attachment]] = relationship(order_by="Attachment.id")


class ThreadKey(Base):
    """A Message-ID known to belong to a ticket's conversation.

    Every id a message names (its own, In-Reply-To, References) becomes a key,
    whether or not that message has arrived yet, so replies that arrive
    before their parent still meet on one ticket.
    """

    __tablename__ = "thread_keys"

    message_id: Mapped[str] = mapped_column(String(998), primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)


class Participant(Base):
    __tablename__ = "participants"
    __table_args__ = (UniqueConstraint("ticket_id", "address"),)

    id: Mapped[intpk]
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    address: Mapped[address]
    name: Mapped[str] = mapped_column(Text, default="")
    role: Mapped[str] = mapped_column(String(16))


class Attachment(Base):
    __tablename__ = "attachments"

    id: Mapped[intpk]
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    filename: Mapped[str] = mapped_column(Text, default="")
    safe_filename: Mapped[str] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(String(255))
    content_id: Mapped[str | None] = mapped_column(String(998))
    inline: Mapped[bool] = mapped_column(Boolean, default=False)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[bytes] = mapped_column(LargeBinary)


class TicketEvent(Base):
    """The audit log: every change to a ticket, who made it and why."""

    __tablename__ = "ticket_events"

    id: Mapped[intpk]
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    at: Mapped[timestamp]
    actor: Mapped[str] = mapped_column(String(320))
    type: Mapped[short]
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    reason: Mapped[str] = mapped_column(Text, default="")


class Outbox(Base):
    """Mail waiting to go out, written in the same transaction as its cause."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at"),
        Index("ix_outbox_recipient_created", "recipient", "created_at"),
    )

    id: Mapped[intpk]
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    kind: Mapped[short]
    to: Mapped[json_list]
    recipient: Mapped[str | None] = mapped_column(String(320))
    """The first of ``to``, lower-cased: what the per-recipient rate limit counts."""
    subject: Mapped[str] = mapped_column(Text, default="")
    message_id: Mapped[str] = mapped_column(String(998), unique=True)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text, default="")
    """Why it was suppressed, or what the last failure was in words."""
    next_attempt_at: Mapped[timestamp]
    created_at: Mapped[timestamp]
    sent_at: Mapped[optional_time]


class ImapMailbox(Base):
    """Where the IMAP poller is in each configured mailbox (by its config name)."""

    __tablename__ = "imap_mailboxes"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    skipped_uids: Mapped[json_list]
    """UIDs the server could not deliver (FETCH errors): logged once, never retried in a loop."""
    fetched: Mapped[int] = mapped_column(BigInteger, default=0)
    deduplicated: Mapped[int] = mapped_column(BigInteger, default=0)
    failed: Mapped[int] = mapped_column(BigInteger, default=0)
    last_poll_at: Mapped[optional_time]
    last_error: Mapped[str | None] = mapped_column(Text)


class Complainer(Base):
    """A recipient who reported our mail as abuse: no automatic mail goes to them again."""

    __tablename__ = "complainers"

    address: Mapped[str] = mapped_column(String(320), primary_key=True)
    reported_at: Mapped[timestamp]
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))


class Setting(Base):
    """A value maildesk makes once and keeps, shared by every daemon on the database
    (the secret that signs agent reply addresses)."""

    __tablename__ = "settings"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)


# -- appending rows without the unit of work -----------------------------------

_INSERTS: dict[tuple[type[Base], bool], Insert] = {}


def _insert(model: type[Base], *, returning_id: bool) -> Insert:
    """One INSERT per table, built once, so SQLAlchemy's statement cache always hits."""
    key = (model, returning_id)
    if key not in _INSERTS:
        table = model.__table__
        _INSERTS[key] = insert(table).returning(table.c.id) if returning_id else insert(table)
    return _INSERTS[key]


_CHILD_INSERTS: dict[tuple[type[Base], type[Base], str, str, tuple[str, ...]], Insert] = {}
_PARENT = "maildesk_parent"


def _insert_children(parent: type[Base], child: type[Base], column: str, parent_key: str,
                     names: tuple[str, ...]) -> Insert:
    """INSERT a ``child`` row whose ``column`` is the id of the ``parent`` row found by its unique
    ``parent_key`` (the bind parameter ``maildesk_parent``); ``names`` are the row's other columns."""
    key = (parent, child, column, parent_key, names)
    if key not in _CHILD_INSERTS:
        parents, children = parent.__table__, child.__table__
        found = select(parents.c.id, *(bindparam(name, type_=children.c[name].type) for name in names)).where(
            parents.c[parent_key] == bindparam(_PARENT))
        _CHILD_INSERTS[key] = insert(children).from_select([column, *names], found)
    return _CHILD_INSERTS[key]


def append_row(session: Session, model: type[Base], values: dict[str, Any]) -> int:
    """INSERT one row of ``model`` now; return its new id."""
    new_id = session.connection().execute(_insert(model, returning_id=True), values).scalar_one()
    return int(new_id)


QUERY_CHUNK = 500
"""Values per ``IN (...)`` list: well under any database's limit on parameters."""


def chunks(values: list[Any], size: int = QUERY_CHUNK) -> Iterator[list[Any]]:
    """``values`` in lists of at most ``size``, for one ``IN (...)`` query each."""
    for start in range(0, len(values), size):
        yield values[start:start + size]


def append_rows(session: Session, model: type[Base], rows: list[dict[str, Any]]) -> None:
    """INSERT ``rows`` of ``model`` now (all with the same keys), as one executemany."""
    if rows:
        session.connection().execute(_insert(model, returning_id=False), rows)


_LATER = "maildesk.append_later"
_CHILDREN = "maildesk.append_later.children"
_WRITES = "maildesk.append_later.writes"


@dataclass(frozen=True)
class Children:
    """Rows of ``model`` whose ``column`` is to hold the id of a row that ``append_later`` holds.

    They are written after it, and find it by ``parent_key``, a unique
    column of its table (a message's attachments find it by its Message-ID).
    """

    model: type[Base]
    column: str
    rows: list[dict[str, Any]]
    parent_key: str


def append_later(session: Session, model: type[Base], row: dict[str, Any], children: Children | None = None) -> None:
    """Append ``row`` of ``model`` with the others of this transaction, before it commits.

    For rows that are written often and read rarely (a bulk import writes a
    message and a few events per mail): one executemany per table and
    transaction instead of one INSERT each. ``children`` (a message's
    attachments) are written right after, with the row's new id. An ORM
    statement whose main entity is ``model`` or a child's model (a query, an
    UPDATE) in the same transaction writes them first, so it finds them; a
    join to ``model`` from another entity does not, and plain Core reads
    must look at ``appended``. A rollback drops them.
    """
    session.info.setdefault(_LATER, {}).setdefault(model, []).append(row)
    if children is not None and children.rows:
        session.info.setdefault(_CHILDREN, {}).setdefault(model, []).append((children, row[children.parent_key]))


def appended(session: Session, model: type[Base]) -> list[dict[str, Any]]:
    """The rows of ``model`` that ``append_later`` holds, not yet written (do not change them)."""
    return session.info.get(_LATER, {}).get(model, [])


def write_appended(session: Session) -> None:
    """Write the rows ``append_later`` holds, now (before a savepoint, say)."""
    pending = session.info.pop(_LATER, {})
    children_of = session.info.pop(_CHILDREN, {})
    try:
        for model, rows in pending.items():
            append_rows(session, model, rows)
            _write_children(session, model, children_of.get(model, []))
    finally:  # written or, if that failed, dropped: either way what waited is gone
        if pending:
            session.info[_WRITES] = appended_writes(session) + 1


def _write_children(session: Session, parent: type[Base], children_of: list[tuple[Children, Any]]) -> None:
    """One executemany per kind of child row, each finding its parent by the parent's unique key."""
    batches: dict[tuple[type[Base], str, str, tuple[str, ...]], list[dict[str, Any]]] = {}
    for children, parent_key_value in children_of:
        for child in children.rows:
            names = tuple(name for name in child if name != children.column)
            batches.setdefault((children.model, children.column, children.parent_key, names), []).append(
                {**child, _PARENT: parent_key_value})
    for (child_model, column, parent_key, names), rows in batches.items():
        session.connection().execute(_insert_children(parent, child_model, column, parent_key, names), rows)


def _waiting_models(session: Session) -> set[type[Base]]:
    """The tables ``append_later`` holds rows for, children included."""
    waiting = set(session.info.get(_LATER, {}))
    for children_of in session.info.get(_CHILDREN, {}).values():
        waiting.update(children.model for children, _ in children_of)
    return waiting


def appended_writes(session: Session) -> int:
    """How many times this session has written (or dropped) the rows ``append_later`` held.

    What was read while rows waited may be out of date once this changes.
    """
    return session.info.get(_WRITES, 0)


@event.listens_for(Session, "before_commit")
def _write_before_commit(session: Session) -> None:
    write_appended(session)


@event.listens_for(Session, "after_soft_rollback")
def _drop_on_rollback(session: Session, _previous: Any) -> None:
    session.info.pop(_CHILDREN, None)
    if session.info.pop(_LATER, None):
        session.info[_WRITES] = appended_writes(session) + 1


@event.listens_for(Session, "do_orm_execute")
def _write_before_reading(state: ORMExecuteState) -> None:
    if state.session.info.get(_LATER):
        waiting = _waiting_models(state.session)
        if any(mapper.class_ in waiting for mapper in state.all_mappers):
            write_appended(state.session)
