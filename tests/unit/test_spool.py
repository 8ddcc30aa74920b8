"""The spool's write side: put_many commits several messages in one transaction,
stores the same bytes once (also within one batch), and stores nothing when the
transaction fails."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import StatementError

from maildesk import spool
from maildesk.config import DatabaseConfig
from maildesk.db import Database, open_database
from maildesk.models import Inbound
from tests.helpers import make_mail


def test_put_many_stores_each_message_and_answers_in_order(db: Database) -> None:
    first, second = make_mail(subject="one"), make_mail(subject="two")
    results = spool.put_many(db, [spool.Item(first, "smtp", {"rcpt_to": ["support@example.com"]}),
                                  spool.Item(second, "lmtp")])
    assert [r.duplicate for r in results] == [False, False]
    with db.session() as session:
        stored = {row.id: (spool.raw_in(session, row.id), row.source, row.envelope)
                  for row in session.scalars(select(Inbound))}
    assert stored == {results[0].id: (first, "smtp", {"rcpt_to": ["support@example.com"]}),
                      results[1].id: (second, "lmtp", {})}


def test_duplicates_within_one_batch_and_across_batches_are_stored_once(db: Database) -> None:
    mail, other = make_mail(subject="twice"), make_mail(subject="once")
    a, b, again = spool.put_many(db, [spool.Item(mail, "smtp"), spool.Item(other, "smtp"), spool.Item(mail, "smtp")])
    assert (a.duplicate, b.duplicate, again) == (False, False, spool.Spooled(a.id, duplicate=True))
    assert spool.put_many(db, [spool.Item(other, "imap")]) == [spool.Spooled(b.id, duplicate=True)]
    assert spool.put(db, mail, source="ingest") == spool.Spooled(a.id, duplicate=True)
    assert spool.counts(db) == {spool.QUEUED: 2}


def test_a_failing_batch_stores_nothing(db: Database) -> None:
    unstorable = {"rcpt_to": [object()]}  # not JSON: the transaction fails part-way
    with pytest.raises((StatementError, TypeError), match="not JSON serializable"):  # per driver
        spool.put_many(db, [spool.Item(make_mail(subject="fine"), "smtp"),
                            spool.Item(make_mail(subject="bad"), "smtp", unstorable)])
    assert spool.counts(db) == {}


def test_put_many_of_nothing_is_nothing(db: Database) -> None:
    assert spool.put_many(db, []) == []


def test_the_same_bytes_delivered_again_keep_every_envelope(db: Database) -> None:
    mail = make_mail()
    to_support = {"rcpt_to": ["support@example.com"], "protocol": "lmtp"}
    to_billing = {"rcpt_to": ["billing@example.com"], "protocol": "lmtp"}
    first = spool.put(db, mail, source="lmtp", envelope=to_support)
    assert spool.put(db, mail, source="lmtp", envelope=to_support).duplicate  # a plain retry: nothing to add
    spool.put(db, mail, source="lmtp", envelope=to_billing)  # one LMTP transaction per recipient

    [row] = spool.list_inbound(db)
    assert row.id == first.id
    assert row.envelope["rcpt_to"] == ["support@example.com", "billing@example.com"]
    assert row.envelope["redeliveries"] == [to_billing]

    with db.session() as session:
        session.execute(update(Inbound).values(state=spool.DONE))
    late = {"rcpt_to": ["sales@example.com"]}
    spool.put(db, mail, source="lmtp", envelope=late)
    [row] = spool.list_inbound(db)
    assert row.envelope["rcpt_to"] == ["support@example.com", "billing@example.com"]  # processed: as it was
    assert row.envelope["redeliveries"] == [to_billing, late]


def test_reading_the_bytes_never_waits_for_a_writer(tmp_path: Path) -> None:
    # The daemon parses a message ahead of its turn at the database; that read must not
    # queue behind the listener's commit (SQLite: one writer at a time).
    db = open_database(DatabaseConfig(url=f"sqlite:///{tmp_path / 'x.db'}", busy_timeout_seconds=5))
    try:
        raw = make_mail()
        spooled = spool.put(db, raw, source="test")
        writer = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")  # a writer holding the lock
        try:
            assert spool.raw_of(db, spooled.id) == raw  # with BEGIN IMMEDIATE: "database is locked" after 5 s
        finally:
            writer.execute("ROLLBACK")
            writer.close()
    finally:
        db.dispose()


def test_a_batch_mixing_new_and_stored_bytes_gives_each_its_own_row(db: Database) -> None:
    """New rows come back from one INSERT by sha256: each id must hold its own bytes."""
    a, b, c = (make_mail(subject=s) for s in "abc")
    stored_b = spool.put(db, b, source="smtp")
    results = spool.put_many(db, [spool.Item(a, "smtp"), spool.Item(b, "smtp"), spool.Item(c, "smtp")])

    assert [r.duplicate for r in results] == [False, True, False] and results[1].id == stored_b.id
    with db.session() as session:
        assert [spool.raw_in(session, r.id) for r in results] == [a, b, c]


def test_the_same_bytes_twice_in_one_batch_keep_both_envelopes(db: Database) -> None:
    """The listener's group commit may hold one LMTP delivery per recipient of one mail."""
    mail = make_mail()
    first, again = spool.put_many(db, [spool.Item(mail, "lmtp", {"rcpt_to": ["support@example.com"]}),
                                       spool.Item(mail, "lmtp", {"rcpt_to": ["billing@example.com"]})])
    assert again == spool.Spooled(first.id, duplicate=True)
    [row] = spool.list_inbound(db)
    assert row.envelope["rcpt_to"] == ["support@example.com", "billing@example.com"]


def test_a_batch_is_numbered_in_arrival_order(db: Database) -> None:
    """The daemon processes the oldest id first: a batch must not come out backwards."""
    mails = [make_mail(subject=s) for s in "abcd"]
    results = spool.put_many(db, [spool.Item(raw, "smtp") for raw in mails])
    assert [r.id for r in results] == sorted(r.id for r in results)
    assert spool.queued_ids(db) == [r.id for r in results]
