"""The IMAP poller against a real Dovecot: every message once, none lost.

Each test has its own Dovecot user; mail is put there by "another client"
(IMAP APPEND), fetched by the poller into the spool, and turned into tickets
by running the processor until the spool is empty.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from maildesk.config import Config, parse_config
from maildesk.db import Database
from maildesk.models import ImapMailbox, Inbound, Message
from maildesk.process import process_queued
from maildesk.receive.imap import PROCESSED_KEYWORD, MailboxPoller
from tests.helpers import Desk, make_mail
from tests.integration.dovecot import Account

pytestmark = pytest.mark.integration


def imap_config(config_data: dict, account: Account, **overrides: Any) -> Config:
    box = {
        "name": "support", "host": account.host, "port": account.port, "tls": "none",
        "username": account.username, "password": account.password,
        "support_address": "support@example.com",
        "reconnect_min_seconds": 0.05, "reconnect_max_seconds": 0.2, "timeout_seconds": 5,
        **overrides,
    }
    return parse_config({**config_data, "imap": [box]})


def poller_for(config: Config, db: Database, cls: type[MailboxPoller] = MailboxPoller) -> MailboxPoller:
    return cls(config.imap[0], db)


def state(db: Database, name: str = "support") -> ImapMailbox:
    with db.session() as session:
        row = session.get(ImapMailbox, name)
        assert row is not None
        session.expunge(row)
        return row


def spooled(db: Database) -> list[Inbound]:
    with db.session() as session:
        rows = list(session.scalars(select(Inbound).order_by(Inbound.id)))
        for row in rows:
            session.expunge(row)
        return rows


def customer_messages(desk: Desk) -> int:
    """Messages that came in (acknowledgements going out are messages too)."""
    with desk.db.session() as session:
        return len(list(session.scalars(select(Message.id).where(Message.direction == "in"))))


def test_new_mail_becomes_tickets_and_is_moved(
    imap_account: Account, config_data: dict, db: Database, desk: Desk
) -> None:
    for n in range(3):
        imap_account.append(make_mail(subject=f"Question {n}"))
    woken: list[int] = []
    config = imap_config(config_data, imap_account, batch_size=2)
    poller = MailboxPoller(config.imap[0], db, on_spooled=lambda: woken.append(1))

    result = poller.run_once()

    assert (result.fetched, result.deduplicated) == (3, 0)
    assert woken == [1, 1]  # once per batch that brought new mail
    rows = spooled(db)
    assert [r.source for r in rows] == ["imap:support"] * 3
    assert rows[0].envelope == {"mailbox": "support", "imap_uid": 1, "rcpt_to": ["support@example.com"]}
    assert imap_account.uids("INBOX") == []
    assert len(imap_account.uids("Processed")) == 3
    process_queued(db, desk.config)
    assert desk.ticket_count() == 3
    assert sorted(desk.ticket(i)["subject"] for i in (1, 2, 3)) == ["Question 0", "Question 1", "Question 2"]
    row = state(db)
    assert (row.last_uid, row.fetched, row.deduplicated, row.failed) == (3, 3, 0, 0)
    assert row.last_poll_at is not None and row.last_error is None
    assert poller.run_once().fetched == 0


def test_mail_already_read_by_another_client_is_fetched(
    imap_account: Account, config_data: dict, db: Database, desk: Desk
) -> None:
    imap_account.append(make_mail(subject="Read on a phone"), flags=(b"\\Seen",))
    poller_for(imap_config(config_data, imap_account), db).run_once()
    process_queued(db, desk.config)
    assert desk.ticket_count() == 1 and desk.ticket(1)["subject"] == "Read on a phone"


def test_after_flag_keeps_the_mail_and_never_fetches_it_again(
    imap_account: Account, config_data: dict, db: Database, desk: Desk
) -> None:
    imap_account.append(make_mail(subject="First"))
    poller = poller_for(imap_config(config_data, imap_account, after="flag"), db)
    assert poller.run_once().fetched == 1
    assert imap_account.flags() == {1: {b"\\Seen", PROCESSED_KEYWORD}}

    imap_account.append(make_mail(subject="Second"))
    assert poller.run_once().fetched == 1  # only the new one
    assert poller.run_once().fetched == 0
    assert imap_account.uids("INBOX") == [1, 2]
    process_queued(db, desk.config)
    assert desk.ticket_count() == 2


def test_after_delete_removes_the_mail(imap_account: Account, config_data: dict, db: Database, desk: Desk) -> None:
    imap_account.append(make_mail())
    poller_for(imap_config(config_data, imap_account, after="delete"), db).run_once()
    assert imap_account.uids("INBOX") == []
    with imap_account.client() as client:
        assert not client.folder_exists("Processed")
    process_queued(db, desk.config)
    assert desk.ticket_count() == 1


def test_move_without_the_move_command_copies_then_expunges(
    imap_account: Account, config_data: dict, db: Database
) -> None:
    class NoMove(MailboxPoller):
        use_move = False

    imap_account.append(make_mail())
    imap_account.append(make_mail())
    poller_for(imap_config(config_data, imap_account, processed_folder="Handled"), db, NoMove).run_once()
    assert imap_account.uids("INBOX") == []
    assert imap_account.uids("Handled") == [1, 2]


class Crash(BaseException):
    """Stands for the process dying: nothing after it runs."""


class CrashBeforeServerAction(MailboxPoller):
    def apply_after(self, client: Any, uids: list[int]) -> None:
        raise Crash


def test_crash_between_spool_commit_and_move_makes_no_duplicate(
    imap_account: Account, config_data: dict, db: Database, desk: Desk
) -> None:
    imap_account.append(make_mail(subject="Sent once"))
    config = imap_config(config_data, imap_account)
    with pytest.raises(Crash):
        poller_for(config, db, CrashBeforeServerAction).run_once()
    assert len(spooled(db)) == 1
    assert imap_account.uids("INBOX") == [1]  # the server was told nothing
    process_queued(db, desk.config)  # the daemon's processor got to it before the restart

    result = poller_for(config, db).run_once()  # the restarted daemon

    assert (result.fetched, result.deduplicated) == (1, 1)
    assert imap_account.uids("INBOX") == []
    assert imap_account.uids("Processed") == [1]
    process_queued(db, desk.config)
    assert desk.ticket_count() == 1 and customer_messages(desk) == 1
    assert len(spooled(db)) == 1
    assert state(db).deduplicated == 1


def test_uidvalidity_change_loses_nothing_and_duplicates_nothing(
    imap_account: Account, config_data: dict, db: Database, desk: Desk
) -> None:
    first = make_mail(subject="Before the migration", message_id="<before@customer.example>")
    imap_account.append(first, folder="Support")
    config = imap_config(config_data, imap_account, folder="Support", after="flag")
    poller = poller_for(config, db)
    poller.run_once()
    old_validity = state(db).uidvalidity

    # The server is rebuilt: the folder is made anew with the old mail (once
    # byte for byte, once with a header the migration added) and a new one.
    with imap_account.client() as client:
        client.delete_folder("Support")
        client.create_folder("Support")
    imap_account.append(first, folder="Support")
    imap_account.append(b"X-Migrated: yes\r\n" + first, folder="Support")
    imap_account.append(make_mail(subject="After the migration"), folder="Support")

    result = poller_for(config, db).run_once()

    assert state(db).uidvalidity != old_validity
    assert (result.fetched, result.deduplicated) == (3, 1)
    process_queued(db, desk.config)
    assert desk.ticket_count() == 2 and customer_messages(desk) == 2
    subjects = {desk.ticket(i)["subject"] for i in (1, 2)}
    assert subjects == {"Before the migration", "After the migration"}


def test_import_existing_false_starts_from_now(
    imap_account: Account, config_data: dict, db: Database, desk: Desk
) -> None:
    imap_account.append(make_mail(subject="Old 1"))
    imap_account.append(make_mail(subject="Old 2"))
    poller = poller_for(imap_config(config_data, imap_account, import_existing=False), db)
    assert poller.run_once().fetched == 0
    imap_account.append(make_mail(subject="New"))
    assert poller.run_once().fetched == 1
    process_queued(db, desk.config)
    assert desk.ticket_count() == 1 and desk.ticket(1)["subject"] == "New"
    assert imap_account.uids("INBOX") == [1, 2]  # old mail left alone


def test_old_mail_is_imported_without_acknowledgement(
    imap_account: Account, config_data: dict, db: Database
) -> None:
    now = datetime.now(UTC)
    with imap_account.client() as client:
        client.append("INBOX", make_mail(subject="Last month"), msg_time=now - timedelta(days=30))
        client.append("INBOX", make_mail(subject="Yesterday"), msg_time=now - timedelta(days=1))
    poller_for(imap_config(config_data, imap_account, ack_max_age_days=2), db).run_once()
    assert [row.notify for row in spooled(db)] == [False, True]


def test_a_mailbox_with_notify_off_acknowledges_nothing(
    imap_account: Account, config_data: dict, db: Database
) -> None:
    imap_account.append(make_mail(subject="Fresh, but from an import box"))
    poller_for(imap_config(config_data, imap_account, notify=False), db).run_once()
    assert [row.notify for row in spooled(db)] == [False]


def test_a_message_the_server_cannot_deliver_is_skipped_and_recorded(
    dovecot: Any, imap_account: Account, config_data: dict, db: Database, desk: Desk
) -> None:
    new_mail = dovecot.maildir(imap_account) / "new"
    imap_account.append(make_mail(subject="Mail 1"))
    before = set(new_mail.iterdir())
    imap_account.append(make_mail(subject="Mail 2"))
    (broken,) = set(new_mail.iterdir()) - before
    imap_account.append(make_mail(subject="Mail 3"))
    os.chmod(broken, 0)  # Dovecot runs as its own user: it can no longer read UID 2
    poller = poller_for(imap_config(config_data, imap_account, max_fetch_attempts=2), db)

    sessions = 0
    while True:  # what `run` does, minus the backoff waits between sessions
        sessions += 1
        assert sessions <= 6, "the poller keeps failing on the broken message"
        try:
            poller.run_once()
            break
        except Exception:  # noqa: BLE001, S112
            continue

    row = state(db)
    assert (row.skipped_uids, row.failed, row.last_uid) == ([2], 1, 3)
    assert imap_account.uids("INBOX") == [2]  # left on the server for a human
    assert poller.run_once().fetched == 0
    process_queued(db, desk.config)
    assert desk.ticket_count() == 2
