"""process(): one transaction per message, idempotent, failures kept and retryable."""

from __future__ import annotations

import threading
from contextlib import contextmanager

import pytest
from sqlalchemy import func, select, text

from maildesk import process as pipeline
from maildesk import spool
from maildesk.desk import tickets
from maildesk.mail.parse import parse
from maildesk.models import Inbound, ThreadKey, Ticket
from tests.conftest import ONLY_POSTGRESQL
from tests.helpers import Desk, make_mail


def test_same_raw_bytes_twice_creates_nothing_new(desk: Desk) -> None:
    raw = make_mail()
    first = desk.ingest(raw)
    second = desk.ingest(raw)

    assert second.ticket_id == first.ticket_id
    assert (desk.ticket_count(), desk.message_count()) == (1, 1)
    assert spool.counts(desk.db) == {"done": 1}


def test_processing_the_same_spooled_message_again_is_a_no_op(desk: Desk) -> None:
    outcome = desk.ingest(make_mail())
    again = pipeline.process(desk.db, desk.config, outcome.inbound_id)

    assert again.state == "done" and again.detail == "already handled"
    assert (desk.ticket_count(), desk.message_count()) == (1, 1)


def test_same_message_id_with_other_bytes_is_stored_once(desk: Desk) -> None:
    """The same mail reaching us twice (e.g. To support@ and Cc billing@) differs in its Received lines."""
    raw = make_mail(message_id="<twice@customer.example>")
    first = desk.ingest(b"Received: from a by b; Mon, 2 Nov 2026 09:00:00 +0000\r\n" + raw)
    second = desk.ingest(b"Received: from c by d; Mon, 2 Nov 2026 09:00:01 +0000\r\n" + raw)

    assert second.ticket_id == first.ticket_id
    assert second.detail == f"duplicate Message-ID: already on ticket #{first.ticket_id}"
    assert (desk.ticket_count(), desk.message_count()) == (1, 1)


def break_classify_on_poison(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Make classify() raise for a mail whose subject says "poison"; returns the real classify."""
    real_classify = pipeline.classify.classify

    def classify_that_breaks_on_one_subject(message, sender, **kwargs):  # type: ignore[no-untyped-def]
        if "poison" in str(message["Subject"]):
            raise RuntimeError("boom while classifying")
        return real_classify(message, sender, **kwargs)

    monkeypatch.setattr(pipeline.classify, "classify", classify_that_breaks_on_one_subject)
    return real_classify


def test_a_failing_message_is_kept_failed_and_the_next_one_is_processed(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_classify = break_classify_on_poison(monkeypatch)
    bad = spool.put(desk.db, make_mail(subject="poison"), source="test")
    good = spool.put(desk.db, make_mail(subject="fine"), source="test")
    outcomes = pipeline.process_queued(desk.db, desk.config)

    assert [o.state for o in outcomes] == ["failed", "done"]
    failed = spool.list_inbound(desk.db, state="failed")
    assert [row.id for row in failed] == [bad.id]
    assert "boom while classifying" in (failed[0].error or "")
    assert failed[0].attempts == 1
    assert desk.ticket_count() == 1 and outcomes[1].inbound_id == good.id

    monkeypatch.setattr(pipeline.classify, "classify", real_classify)
    assert spool.retry(desk.db, bad.id)
    retried = pipeline.process(desk.db, desk.config, bad.id)
    assert retried.state == "done" and desk.ticket_count() == 2


def test_a_failed_message_leaves_no_partial_rows(desk: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail_after_the_ticket_exists(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("crash half-way")

    monkeypatch.setattr(pipeline.threader, "remember_keys", fail_after_the_ticket_exists)
    outcome = desk.ingest(make_mail())

    assert outcome.state == "failed"
    assert (desk.ticket_count(), desk.message_count()) == (0, 0)


def test_retry_refuses_a_message_that_did_not_fail(desk: Desk) -> None:
    outcome = desk.ingest(make_mail())
    assert not spool.retry(desk.db, outcome.inbound_id)


def test_unknown_inbound_id_is_reported_not_raised(desk: Desk) -> None:
    assert pipeline.process(desk.db, desk.config, 12345).state == "missing"


def test_spool_keeps_the_raw_bytes_and_envelope(desk: Desk) -> None:
    raw = make_mail()
    spooled = spool.put(desk.db, raw, source="smtp", envelope={"mail_from": "a@b", "rcpt_to": ["support@example.com"]})
    with desk.db.session() as session:
        row = session.get(Inbound, spooled.id)
        assert row is not None
        assert spool.raw_in(session, row.id) == raw and row.size == len(raw) and row.state == "queued"
        assert row.envelope["rcpt_to"] == ["support@example.com"]


def test_a_batch_keeps_every_good_message_when_one_in_the_middle_fails(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_remember_keys = pipeline.threader.remember_keys

    def remember_keys_that_breaks_on_one_ticket(session, ticket_id, keys, **kwargs):  # type: ignore[no-untyped-def]
        if any("poison" in key for key in keys):
            raise RuntimeError("crash after the ticket and message rows were written")
        return real_remember_keys(session, ticket_id, keys, **kwargs)

    monkeypatch.setattr(pipeline.threader, "remember_keys", remember_keys_that_breaks_on_one_ticket)
    ids = [
        spool.put(desk.db, make_mail(subject=subject, message_id=f"<{subject}@customer.example>"), source="test",
                  notify=False).id
        for subject in ("first", "poison", "third")
    ]
    outcomes = pipeline.process_many(desk.db, desk.config, ids)

    assert [o.state for o in outcomes] == ["done", "failed", "done"]
    assert "crash after the ticket" in outcomes[1].detail
    # The failed message's savepoint took its ticket and message with it; the others stay.
    assert (desk.ticket_count(), desk.message_count()) == (2, 2)
    assert {desk.ticket(o.ticket_id)["subject"] for o in outcomes if o.ticket_id} == {"first", "third"}
    assert spool.counts(desk.db) == {"done": 2, "failed": 1}


def fail_the_first_commit(desk: Desk, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Make the next ``db.session()`` fail where it would commit; returns the sessions opened."""
    real_session = desk.db.session
    sessions: list[object] = []

    @contextmanager
    def first_commit_fails():  # type: ignore[no-untyped-def]
        with real_session() as session:
            yield session
            sessions.append(session)
            if len(sessions) == 1:
                raise RuntimeError("commit refused")

    monkeypatch.setattr(desk.db, "session", first_commit_fails)
    return sessions


def test_a_batch_whose_commit_fails_is_processed_again_one_by_one(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should the batch's commit itself fail, each message gets a transaction of its own."""
    ids = [spool.put(desk.db, make_mail(subject=s), source="test").id for s in ("a", "b")]
    sessions = fail_the_first_commit(desk, monkeypatch)
    outcomes = pipeline.process_many(desk.db, desk.config, ids)

    assert [o.state for o in outcomes] == ["done", "done"]
    assert len(sessions) == 3  # the batch, then one each
    assert desk.ticket_count() == 2 and spool.counts(desk.db) == {"done": 2}


def test_a_message_whose_own_commit_fails_is_marked_failed(desk: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    inbound_id = spool.put(desk.db, make_mail(), source="test", notify=False).id
    fail_the_first_commit(desk, monkeypatch)
    outcome = pipeline.process(desk.db, desk.config, inbound_id)

    assert outcome.state == "failed" and "commit refused" in outcome.detail
    assert spool.counts(desk.db) == {"failed": 1} and desk.ticket_count() == 0


def test_a_batch_naming_one_spooled_message_twice_processes_it_once(desk: Desk) -> None:
    """``ingest a.eml a.eml``: the same bytes are one spool row, named twice in the batch."""
    inbound_id = spool.put(desk.db, make_mail(), source="test").id
    first, second = pipeline.process_many(desk.db, desk.config, [inbound_id, inbound_id])

    assert first.created and first.detail == f"new ticket #{first.ticket_id}"
    assert (second.state, second.ticket_id, second.detail) == ("done", first.ticket_id, "already handled")
    [row] = spool.list_inbound(desk.db)
    assert (row.state, row.ticket_id, row.disposition) == ("done", first.ticket_id, first.detail)


def test_a_merge_in_a_batch_moves_the_spool_rows_of_the_same_batch(desk: Desk) -> None:
    """C answers B, A opens another ticket, B (In-Reply-To A only) joins them: all in one transaction."""
    mails = [
        make_mail(message_id="<c@customer.example>", in_reply_to="<b@customer.example>", subject="Re: Q"),
        make_mail(message_id="<a@customer.example>", subject="Q"),
        make_mail(message_id="<b@customer.example>", in_reply_to="<a@customer.example>", subject="Re: Q"),
    ]
    ids = [spool.put(desk.db, raw, source="test", notify=False).id for raw in mails]
    outcomes = pipeline.process_many(desk.db, desk.config, ids)

    survivor = outcomes[-1].ticket_id
    assert "merged" in outcomes[-1].detail
    assert {row.id: row.ticket_id for row in spool.list_inbound(desk.db)} == dict.fromkeys(ids, survivor)
    assert len(desk.ticket(survivor)["messages"]) == 3
    with desk.db.session() as session:  # the keys written at commit moved as well
        keys = {key: ticket for key, ticket in session.execute(select(ThreadKey.message_id, ThreadKey.ticket_id))}
    assert keys == dict.fromkeys([f"<{n}@customer.example>" for n in "abc"], survivor)


def test_a_batch_that_merges_looks_its_keys_up_again(desk: Desk) -> None:
    """Keys looked up ahead for a batch may name a ticket the batch then merges away."""
    first = [make_mail(message_id="<c@customer.example>", in_reply_to="<b@customer.example>", subject="Re: Q"),
             make_mail(message_id="<a@customer.example>", subject="Q")]
    older, younger = (desk.ingest(raw).ticket_id for raw in first)
    batch = [make_mail(message_id="<b@customer.example>", in_reply_to="<a@customer.example>", subject="Re: Q"),
             make_mail(message_id="<e@customer.example>", in_reply_to="<a@customer.example>", subject="Re: Q")]
    ids = [spool.put(desk.db, raw, source="test", notify=False).id for raw in batch]
    parsed = {inbound_id: parse(raw) for inbound_id, raw in zip(ids, batch, strict=True)}
    linking, late = pipeline.process_many(desk.db, desk.config, ids, parsed=parsed)

    assert "merged" in linking.detail and linking.ticket_id == older
    assert late.ticket_id == older  # <a@...> was looked up as the younger ticket's key: it moved
    assert desk.ticket(younger)["status"] == "merged"


def test_a_parsed_ahead_batch_with_a_failing_message_threads_the_rest(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rerun with savepoints writes each message's thread keys as it goes: none may be claimed twice."""
    break_classify_on_poison(monkeypatch)
    batch = [make_mail(subject="poison"),
             make_mail(message_id="<r1@customer.example>", in_reply_to="<missing@customer.example>", subject="Re: Q"),
             make_mail(message_id="<r2@customer.example>", in_reply_to="<missing@customer.example>", subject="Re: Q")]
    ids = [spool.put(desk.db, raw, source="test", notify=False).id for raw in batch]
    parsed = {inbound_id: parse(raw) for inbound_id, raw in zip(ids, batch, strict=True)}
    outcomes = pipeline.process_many(desk.db, desk.config, ids, parsed=parsed)

    assert [o.state for o in outcomes] == ["failed", "done", "done"], [o.detail for o in outcomes]
    assert outcomes[1].ticket_id == outcomes[2].ticket_id


def test_the_same_failing_message_twice_in_a_batch_fails_once(desk: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    break_classify_on_poison(monkeypatch)
    raw = make_mail(subject="poison")
    inbound_id = spool.put(desk.db, raw, source="test").id
    first, second = pipeline.process_many(desk.db, desk.config, [inbound_id, inbound_id],
                                          parsed={inbound_id: parse(raw)})

    assert (first.state, second.state, second.detail) == ("failed", "failed", "already handled")
    [row] = spool.list_inbound(desk.db)
    assert row.attempts == 1


@ONLY_POSTGRESQL
def test_a_failing_message_does_not_let_another_daemon_thread_in_the_middle_of_a_batch(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rolling back a message's savepoint must not release the batch's threading lock."""
    break_classify_on_poison(monkeypatch)
    batch = [make_mail(subject="poison"), make_mail(message_id="<x@customer.example>")]
    ids = [spool.put(desk.db, raw, source="test", notify=False).id for raw in batch]
    # The same mail delivered to our other address: other bytes, the same Message-ID.
    copy = spool.put(desk.db, b"Received: from mx2 by desk; Mon, 2 Nov 2026 09:00:00 +0000\r\n" + batch[1],
                     source="smtp", notify=False).id
    other_daemon: dict[str, pipeline.Outcome] = {}
    worker = threading.Thread(target=lambda: other_daemon.setdefault("outcome", pipeline.process(
        desk.db, desk.config, copy)))
    real_failed = pipeline._failed

    def failed_while_another_daemon_works(*args, **kwargs):  # type: ignore[no-untyped-def]
        outcome = real_failed(*args, **kwargs)
        worker.start()
        worker.join(2)  # it must wait for the lock; if it got it, it is done long before
        return outcome

    monkeypatch.setattr(pipeline, "_failed", failed_while_another_daemon_works)
    outcomes = pipeline.process_many(desk.db, desk.config, ids, parsed={i: parse(r) for i, r in zip(ids, batch)})
    worker.join()

    assert outcomes[1].state == "done" and outcomes[1].created, outcomes[1].detail
    assert other_daemon["outcome"].detail == f"duplicate Message-ID: already on ticket #{outcomes[1].ticket_id}"


@ONLY_POSTGRESQL
def test_a_status_change_committed_during_a_batch_is_seen_by_its_later_messages(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL an agent may solve a ticket while ingest works; a reply after that reopens it."""
    ticket_id = desk.ingest(make_mail(message_id="<a@customer.example>")).ticket_id
    batch = [make_mail(sender="Bob <bob@other.example>", subject="Another matter"),  # looks the reply's keys up
             make_mail(message_id="<second@customer.example>", in_reply_to="<a@customer.example>", subject="Re: Q")]
    ids = [spool.put(desk.db, raw, source="test", notify=False).id for raw in batch]
    real_apply = pipeline._apply

    def apply_after_an_agent_solved_it(batch_, config, inbound, parsed, now, log):  # type: ignore[no-untyped-def]
        if parsed.message_id == "<second@customer.example>":
            with desk.db.session() as agent:  # `maildesk tickets set-status ... solved`, no threading lock
                tickets.set_status(agent, agent.get(Ticket, ticket_id), "solved", actor="agent", now=now,
                                   reason="done")
        return real_apply(batch_, config, inbound, parsed, now, log)

    monkeypatch.setattr(pipeline, "_apply", apply_after_an_agent_solved_it)
    pipeline.process_many(desk.db, desk.config, ids, parsed={i: parse(r) for i, r in zip(ids, batch)})

    assert desk.ticket(ticket_id)["status"] == "open"


def test_a_batch_adds_a_new_cc_to_a_ticket_once(desk: Desk) -> None:
    """Parsed ahead, a batch knows the participants of the tickets it answers, and keeps count."""
    ticket_id = desk.ingest(make_mail(message_id="<a@customer.example>", cc="Carol <carol@customer.example>")).ticket_id
    batch = [make_mail(sender="Dave <dave@other.example>", subject="Another matter"),
             *(make_mail(message_id=f"<r{n}@customer.example>", in_reply_to="<a@customer.example>", subject="Re: Q",
                         cc="Bob <bob@customer.example>, Carol <carol@customer.example>") for n in (1, 2))]
    ids = [spool.put(desk.db, raw, source="test", notify=False).id for raw in batch]
    outcomes = pipeline.process_many(desk.db, desk.config, ids, parsed={i: parse(r) for i, r in zip(ids, batch)})

    assert [o.state for o in outcomes] == ["done"] * 3, [o.detail for o in outcomes]
    people = sorted(p["address"] for p in desk.ticket(ticket_id)["participants"])
    assert people == ["alice@customer.example", "bob@customer.example", "carol@customer.example"]


_REFUSED_FOR_GOOD = {
    # SQLite: SQLITE_ERROR, as "too many SQL variables" is.
    "sqlite": (text("SELECT * FROM no_such_table"), "no such table"),
    # PostgreSQL: SQLSTATE 54011, "program limit exceeded", as an index entry too large is.
    "postgresql": (text("SELECT " + ", ".join(["1"] * 1700)), "1664"),
}
"""A statement each database refuses with an OperationalError that retrying cannot cure."""


@pytest.mark.parametrize("batched", [False, True])
def test_a_message_the_database_cannot_take_fails_instead_of_waiting_forever(
    desk: Desk, monkeypatch: pytest.MonkeyPatch, batched: bool
) -> None:
    """A lock or a lost connection is worth retrying, other errors are not: the same data hits them again."""
    statement, error = _REFUSED_FOR_GOOD[desk.db.engine.dialect.name]
    real_add_message = tickets.add_message

    def add_message(session, ticket, mail, **kwargs):  # type: ignore[no-untyped-def]
        if mail.subject == "too big":
            session.execute(statement)
        return real_add_message(session, ticket, mail, **kwargs)

    monkeypatch.setattr(tickets, "add_message", add_message)
    ids = [spool.put(desk.db, make_mail(subject=subject), source="test").id for subject in ("too big", "fine")]
    if batched:
        outcomes = pipeline.process_many(desk.db, desk.config, ids)
    else:
        outcomes = [pipeline.process(desk.db, desk.config, inbound_id) for inbound_id in ids]
    assert [o.state for o in outcomes] == ["failed", "done"]
    assert error in (spool.list_inbound(desk.db, state="failed")[0].error or "")


def test_a_mail_naming_more_ids_than_a_query_takes_is_processed(desk: Desk) -> None:
    """Found by review: 70,000 ids in one IN list overflowed PostgreSQL's 65,535 parameters."""
    ids = " ".join(f"<r{n}@customer.example>" for n in range(70_000)).encode()
    outcome = desk.ingest(b"From: alice@customer.example\r\nTo: support@example.com\r\nSubject: many\r\n"
                          b"Message-ID: <many@customer.example>\r\nIn-Reply-To: " + ids + b"\r\n"
                          b"References: " + ids + b"\r\n\r\nhello\r\n")
    assert outcome.state == "done"
    with desk.db.session() as session:
        keys = session.scalar(select(func.count()).select_from(ThreadKey)
                              .where(ThreadKey.ticket_id == outcome.ticket_id))
    assert keys == 1 + 100  # its own id, and the same 100 of each header (parse.MAX_IDS)
