"""Find the ticket a message belongs to.

In this order:

1. Message-IDs. The message's In-Reply-To, then its References (newest
   first), then its own Message-ID are looked up among the thread keys of
   all tickets. Every id a stored message named is a key, whether or not
   that message has arrived (as in JWZ's threading), so replies that come
   before their parent meet on one ticket and the parent joins them.
2. The subject tag (``[#123]`` or ``[ACME #123]``).

Either way only a participant of the ticket joins it. A Message-ID or a tag
is no secret (a customer forwards our mail, an acknowledgement is quoted in a
public list): a stranger who names one gets a new ticket linked to the old
one, and the event log says why. Nothing of theirs reopens the old ticket or
adds people to it.

A match on a ticket closed longer than the reopen window opens a new ticket
linked to it instead of reviving an old conversation; further mail from that
sender to the old conversation joins the new ticket, not yet another one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import lru_cache

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from maildesk.desk.tickets import CLOSED, MERGED
from maildesk.models import MAX_ID, Participant, ThreadKey, Ticket, append_later, appended, appended_writes, chunks


@dataclass(frozen=True)
class ThreadMatch:
    """Where a message goes: an existing ticket, or a new one (maybe linked)."""

    ticket: Ticket | None
    via: str
    """How it was found: in-reply-to, references, message-id, subject-tag, or new."""
    linked_to: Ticket | None = None
    reason: str = ""
    claimed_keys: frozenset[str] | None = None
    """The message's ids that were already some ticket's keys when it was threaded
    (None if unknown): lets ``remember_keys`` skip looking them up again."""
    answers_closed: bool = False
    """The message belongs to ``linked_to``, a ticket closed longer than the reopen window."""
    also: tuple[Ticket, ...] = ()
    """Other tickets the message's ids name: one conversation split in two (see desk/merge.py)."""
    from_stranger: bool = False
    """The message's ids name ``linked_to``, but its sender is not a participant of it."""


IsParticipant = Callable[[Ticket, str], bool]


def subject_tag(ticket_id: int, prefix: str = "") -> str:
    return f"[{prefix} #{ticket_id}]" if prefix else f"[#{ticket_id}]"


@lru_cache(maxsize=16)
def _tag_pattern(prefix: str) -> re.Pattern[str]:
    lead = rf"{re.escape(prefix)}\s*" if prefix else ""
    return re.compile(rf"\[\s*{lead}#([0-9]{{1,18}})\s*\]", re.IGNORECASE)


def find_subject_tag(subject: str, prefix: str = "") -> int | None:
    """The ticket id in the subject's first tag, or None; a number no ticket can have is no tag."""
    match = _tag_pattern(prefix).search(subject)
    if match is None:
        return None
    ticket_id = int(match.group(1))
    return ticket_id if 0 < ticket_id <= MAX_ID else None


def strip_subject_tag(subject: str, prefix: str = "") -> str:
    """The subject without its tags (a number no ticket can have is left as the sender wrote it)."""
    untagged = _tag_pattern(prefix).sub(lambda m: "" if 0 < int(m.group(1)) <= MAX_ID else m.group(0), subject)
    return re.sub(r"\s{2,}", " ", untagged).strip()


def thread_keys(message_id: str, in_reply_to: list[str], references: list[str]) -> list[str]:
    """The ids to look up, most telling first, without repeats."""
    ordered = [*in_reply_to, *reversed(references), message_id]
    return list(dict.fromkeys(key for key in ordered if key))


def find_thread(
    session: Session,
    *,
    message_id: str,
    in_reply_to: list[str],
    references: list[str],
    subject: str,
    sender: str,
    tag_prefix: str,
    reopen_window: timedelta,
    now: datetime,
    claimed: dict[str, int] | None = None,
    is_participant: IsParticipant | None = None,
) -> ThreadMatch:
    """``claimed``: ``claimed_keys`` of this message's ids, if the caller has looked them up;
    ``is_participant``: how to tell whether an address is on a ticket, if the caller knows better
    than asking the database."""
    keys = thread_keys(message_id, in_reply_to, references)
    if claimed is None:
        claimed = claimed_keys(session, keys)
    if is_participant is None:
        is_participant = lambda ticket, address: is_participant(session, ticket.id, address)  # noqa: E731
    match = _match_by_ids(session, keys, claimed, in_reply_to, references)
    if match.ticket is not None and not is_participant(match.ticket, sender):
        match = _from_stranger(match, sender)
    elif match.ticket is None and not match.from_stranger:
        match = _match_by_tag(session, subject, sender, tag_prefix, is_participant)
    if match.ticket is not None and _closed_too_long(match.ticket, reopen_window, now):
        closed = match.ticket
        follow_up = _follow_up_of(session, closed, sender)
        if follow_up is not None:
            match = ThreadMatch(follow_up, "follow-up",
                                reason=f"follows up ticket #{closed.id}, closed longer than the reopen window")
        else:
            match = ThreadMatch(
                None,
                "new",
                linked_to=closed,
                reason=(
                    f"ticket #{closed.id} was closed on {closed.closed_at:%Y-%m-%d}, "
                    f"longer than the reopen window of {reopen_window.days} days"
                ),
                answers_closed=True,
            )
    return replace(match, claimed_keys=frozenset(claimed))


_CLAIMED_KEYS = select(ThreadKey.message_id, ThreadKey.ticket_id).where(
    ThreadKey.message_id.in_(bindparam("keys", expanding=True))
)


_PARTICIPANTS = select(Participant.ticket_id, Participant.address)


@dataclass
class KeysAhead:
    """The thread keys of a whole batch, looked up at once (``look_ahead``)."""

    keys: set[str]
    claimed: dict[str, int]
    tickets: list[Ticket]
    """The tickets they name, kept loaded (the session's identity map holds them only weakly)."""
    participants: dict[int, set[str]]
    """The addresses on each of those tickets (kept up to date by ``tickets.add_participants``)."""
    writes: int
    """``models.appended_writes`` when they were looked up: once keys claimed since are written, they are stale."""


def look_ahead(session: Session, keys: Iterable[str], *, load_tickets: bool) -> KeysAhead:
    """Look up the keys of a whole batch of messages at once, for ``claimed_keys``.

    Call it with the threading lock held (no other worker may claim or move
    keys until the commit). What it found holds while the keys claimed since
    wait unwritten (``append_later``; ``claimed_keys`` checks) and until a
    merge moves keys: the caller drops it before a merge. ``load_tickets``:
    also load the tickets the keys name and their participants, when nobody
    else can change them before the commit (SQLite: the batch holds the only
    write lock).
    """
    keys = list(dict.fromkeys(keys))
    claimed: dict[str, int] = {}
    for part in chunks(keys):
        rows = session.connection().execute(_CLAIMED_KEYS, {"keys": part})
        claimed.update((key, ticket_id) for key, ticket_id in rows)
    tickets: list[Ticket] = []
    participants: dict[int, set[str]] = {}
    if load_tickets and claimed:
        ids = set(claimed.values())
        tickets = list(session.scalars(select(Ticket).where(Ticket.id.in_(ids))))
        participants = {ticket_id: set() for ticket_id in ids}
        for ticket_id, address in session.execute(_PARTICIPANTS.where(Participant.ticket_id.in_(ids))):
            participants[ticket_id].add(address)
    return KeysAhead(set(keys), claimed, tickets, participants, appended_writes(session))


def claimed_keys(session: Session, keys: list[str], ahead: KeysAhead | None = None) -> dict[str, int]:
    """Which of ``keys`` already belong to a ticket, and to which.

    Every stored message's own Message-ID is a key (``remember_keys``), so
    an id that is not claimed is not the id of any stored message. Keys
    claimed in this transaction may still wait to be written; keys in
    ``ahead`` are not looked up again while it holds.
    """
    waiting = {row["message_id"]: row["ticket_id"] for row in appended(session, ThreadKey)}
    if ahead is not None and ahead.writes != appended_writes(session):
        ahead = None  # keys claimed since have been written (a savepoint's release): ask the database
    claimed: dict[str, int] = {}
    unknown = []
    for key in keys:
        if key in waiting:
            claimed[key] = waiting[key]
        elif ahead is not None and key in ahead.keys:
            if key in ahead.claimed:
                claimed[key] = ahead.claimed[key]
        else:
            unknown.append(key)
    for part in chunks(unknown):
        rows = session.connection().execute(_CLAIMED_KEYS, {"keys": part})
        claimed.update((key, ticket_id) for key, ticket_id in rows)
    return claimed


def _match_by_ids(
    session: Session, keys: list[str], found: dict[str, int], in_reply_to: list[str], references: list[str]
) -> ThreadMatch:
    for key in keys:
        if key in found:
            via = "in-reply-to" if key in in_reply_to else "references" if key in references else "message-id"
            others = dict.fromkeys(t for t in found.values() if t != found[key])
            return ThreadMatch(session.get(Ticket, found[key]), via, reason=f"{via} {key}",
                               also=tuple(t for t in (session.get(Ticket, i) for i in others) if t is not None))
    return ThreadMatch(None, "new")


def _from_stranger(match: ThreadMatch, sender: str) -> ThreadMatch:
    """The ticket ``match`` found is not the sender's: a new ticket, linked to it."""
    ticket = match.ticket
    assert ticket is not None
    return ThreadMatch(
        None,
        "new",
        linked_to=ticket,
        reason=f"{match.reason} from {sender or 'an unknown sender'}, who is not a participant of ticket #{ticket.id}",
        from_stranger=True,
    )


def _match_by_tag(session: Session, subject: str, sender: str, prefix: str, is_participant: IsParticipant,
                  ) -> ThreadMatch:
    ticket_id = find_subject_tag(subject, prefix)
    if ticket_id is None:
        return ThreadMatch(None, "new")
    ticket = session.get(Ticket, ticket_id)
    while ticket is not None and ticket.status == MERGED and ticket.linked_ticket_id is not None:
        ticket = session.get(Ticket, ticket.linked_ticket_id)  # the tag of a ticket merged into another
    if ticket is None:
        return ThreadMatch(None, "new", reason=f"subject tag names ticket #{ticket_id}, which does not exist")
    if is_participant(ticket, sender):
        return ThreadMatch(ticket, "subject-tag", reason=f"subject tag {subject_tag(ticket_id, prefix)}")
    return ThreadMatch(
        None,
        "new",
        linked_to=ticket,
        reason=(
            f"subject tag {subject_tag(ticket_id, prefix)} from {sender or 'an unknown sender'}, "
            f"who is not a participant of ticket #{ticket_id}"
        ),
    )


def is_participant(session: Session, ticket_id: int, address: str) -> bool:
    if not address:
        return False
    query = select(Participant.id).where(
        Participant.ticket_id == ticket_id, Participant.address == address.lower()
    )
    return session.scalar(query) is not None


def _follow_up_of(session: Session, closed: Ticket, sender: str) -> Ticket | None:
    """The newest ticket not yet closed that is linked to ``closed`` and has ``sender`` on it."""
    if not sender:
        return None
    query = (
        select(Ticket).join(Participant, Participant.ticket_id == Ticket.id)
        .where(Ticket.linked_ticket_id == closed.id, Ticket.status != CLOSED,
               Participant.address == sender.lower())
        .order_by(Ticket.id.desc()).limit(1)
    )
    return session.scalar(query)


def _closed_too_long(ticket: Ticket, window: timedelta, now: datetime) -> bool:
    return ticket.status == CLOSED and ticket.closed_at is not None and now - ticket.closed_at > window


def remember_keys(
    session: Session, ticket_id: int, keys: list[str], *, claimed: frozenset[str] | None = None
) -> None:
    """Make every id of this message a key of the ticket (first ticket to claim a key keeps it).

    ``claimed``: the keys already taken, when the caller has just looked them
    up in this transaction (``ThreadMatch.claimed_keys``); else they are looked up here.
    The new keys are written with the transaction's other appended rows
    (``append_later``), in one statement before it commits; until then
    ``claimed_keys`` finds them where they wait.
    """
    if not keys:
        return
    taken = set(claimed_keys(session, keys) if claimed is None else claimed)
    for key in dict.fromkeys(keys):
        if key not in taken:
            append_later(session, ThreadKey, {"message_id": key, "ticket_id": ticket_id})
