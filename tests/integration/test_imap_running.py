"""The IMAP pollers running as the daemon runs them, in threads, against Dovecot:
IDLE, a server that goes away and comes back, a broken mailbox beside a good one."""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import func, select

from maildesk.config import parse_config
from maildesk.db import Database
from maildesk.models import ImapMailbox, Inbound
from maildesk.process import process_queued
from maildesk.receive.imap import ImapPollers, MailboxPoller
from tests.helpers import Desk, make_mail
from tests.integration.dovecot import Account, DovecotServer
from tests.integration.test_imap import imap_config

pytestmark = pytest.mark.integration


def eventually(
    condition: Callable[[], Any], *, timeout: float = 20.0, what: str, explain: Callable[[], str] = str
) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}; {explain()}")
        time.sleep(0.02)
    return result


def spool_size(db: Database) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(Inbound)) or 0


def mailbox(db: Database, name: str = "support") -> ImapMailbox | None:
    with db.session() as session:
        row = session.get(ImapMailbox, name)
        if row is not None:
            session.expunge(row)
        return row


@contextmanager
def running(poller: MailboxPoller) -> Iterator[threading.Thread]:
    stop = threading.Event()
    thread = threading.Thread(target=poller.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(10)
        assert not thread.is_alive(), "the poller did not stop"


def first_poll_done(db: Database) -> bool:
    row = mailbox(db)
    return row is not None and row.last_poll_at is not None


def test_idle_picks_up_a_new_message_at_once(
    imap_account: Account, config_data: dict, db: Database, desk: Desk
) -> None:
    # Polling would take an hour: only IDLE can bring the message in before the deadline.
    config = imap_config(config_data, imap_account, poll_interval_seconds=3600)
    with running(MailboxPoller(config.imap[0], db)):
        eventually(lambda: first_poll_done(db), what="the first poll")
        appended = time.monotonic()
        imap_account.append(make_mail(subject="Via IDLE"))
        eventually(lambda: spool_size(db) == 1, what="the message to be spooled")
        latency = time.monotonic() - appended
    print(f"IDLE latency {latency:.3f}s")
    process_queued(db, desk.config)
    assert desk.ticket(1)["subject"] == "Via IDLE"
    assert imap_account.uids("INBOX") == []


def test_mail_arriving_while_the_poller_works_is_not_left_for_the_next_idle_timeout(
    imap_account: Account, config_data: dict, db: Database
) -> None:
    class MailArrivesDuringFetch(MailboxPoller):
        def _fetch(self, client: Any, batch: list[int]) -> Any:
            if spool_size(db) == 0:
                # Announced at the end of this FETCH, after the search was done: IDLE
                # will not mention it again, so the poller has to notice now.
                imap_account.append(make_mail(subject="During the fetch"))
            return super()._fetch(client, batch)

    imap_account.append(make_mail(subject="First"))
    config = imap_config(config_data, imap_account, poll_interval_seconds=3600)
    with running(MailArrivesDuringFetch(config.imap[0], db)):
        eventually(lambda: spool_size(db) == 2, what="the message that arrived during the fetch")


def test_idle_is_issued_again_after_idle_timeout(imap_account: Account, config_data: dict, db: Database) -> None:
    class CountingIdles(MailboxPoller):
        idles = 0

        def _idle(self, client: Any, stop: threading.Event) -> None:
            CountingIdles.idles += 1
            super()._idle(client, stop)

    config = imap_config(config_data, imap_account, idle_timeout_seconds=0.2, poll_interval_seconds=3600)
    with running(CountingIdles(config.imap[0], db)):
        eventually(lambda: CountingIdles.idles >= 3, what="IDLE to be re-issued")
        imap_account.append(make_mail())
        eventually(lambda: spool_size(db) == 1, what="the message, after several IDLE rounds")
    assert (mailbox(db) or ImapMailbox()).last_error is None


def test_polling_without_idle(imap_account: Account, config_data: dict, db: Database) -> None:
    config = imap_config(config_data, imap_account, idle=False, poll_interval_seconds=0.1)
    with running(MailboxPoller(config.imap[0], db)):
        eventually(lambda: first_poll_done(db), what="the first poll")
        imap_account.append(make_mail())
        eventually(lambda: spool_size(db) == 1, what="the message to be spooled")


def test_the_server_going_away_and_coming_back_is_survived(config_data: dict, db: Database, desk: Desk) -> None:
    server = DovecotServer()
    try:
        server.start()
        account = server.new_account()
        # After a restart Dovecot has been seen (once, under load) to leave the
        # poller's IDLE unaware of new mail; the bounded IDLE is what guarantees
        # the message still comes in, and it is what this test relies on.
        config = imap_config(config_data, account, idle_timeout_seconds=3)

        def explain() -> str:
            row = mailbox(db)
            stack = "".join(traceback.format_stack(sys._current_frames()[thread.ident or 0]))
            return f"last error: {row and row.last_error}\npoller at:\n{stack}\nDovecot log:\n{server.log()}"

        with running(MailboxPoller(config.imap[0], db)) as thread:
            account.append(make_mail(subject="Before the outage"))
            eventually(lambda: spool_size(db) == 1, what="the first message", explain=explain)

            server.stop()
            eventually(lambda: (mailbox(db) or ImapMailbox()).last_error, what="the poller to notice")
            server.start()  # same port, same mailbox
            account.append(make_mail(subject="After the outage"))

            eventually(lambda: spool_size(db) == 2, what="the message sent after the outage", explain=explain)
            eventually(lambda: account.uids("INBOX") == [], what="the message to be moved", explain=explain)
        assert (mailbox(db) or ImapMailbox()).last_error is None
    finally:
        server.remove()
    process_queued(db, desk.config)
    assert desk.ticket_count() == 2


def test_one_broken_mailbox_does_not_stop_the_others(
    dovecot: DovecotServer, config_data: dict, db: Database, desk: Desk
) -> None:
    good, other = dovecot.new_account(), dovecot.new_account()
    common = {"host": good.host, "port": good.port, "tls": "none",
              "reconnect_min_seconds": 0.05, "reconnect_max_seconds": 0.2}
    config = parse_config({**config_data, "imap": [
        {**common, "name": "wrong-password", "username": other.username, "password": "not it"},
        {**common, "name": "missing-folder", "username": other.username, "password": other.password,
         "folder": "Nope"},
        {**common, "name": "good", "username": good.username, "password": good.password},
    ]})
    woken = threading.Event()
    pollers = ImapPollers(config, db, on_spooled=woken.set)
    pollers.start()
    try:
        good.append(make_mail(subject="Still arrives"))
        eventually(lambda: spool_size(db) == 1, what="mail from the good mailbox")
        eventually(lambda: (mailbox(db, "wrong-password") or ImapMailbox()).last_error, what="the login error")
        eventually(lambda: (mailbox(db, "missing-folder") or ImapMailbox()).last_error, what="the folder error")
    finally:
        pollers.stop()
    assert woken.is_set()
    assert "refused" in (mailbox(db, "wrong-password") or ImapMailbox()).last_error  # type: ignore[operator]
    assert "not it" not in (mailbox(db, "wrong-password") or ImapMailbox()).last_error  # type: ignore[operator]
    process_queued(db, desk.config)
    assert desk.ticket(1)["subject"] == "Still arrives"
