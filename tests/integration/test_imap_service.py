"""`maildesk serve` and `maildesk imap poll` with an [[imap]] mailbox, as an admin
runs them: mail put in the Dovecot mailbox becomes a ticket; `maildesk imap status
--json` shows the counters; SIGTERM stops the daemon cleanly; a process killed
between the spool commit and the MOVE makes no duplicate."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from maildesk import spool
from maildesk.config import load_config
from maildesk.db import open_database
from maildesk.process import process_queued
from tests.helpers import Desk, make_mail
from tests.integration.conftest import TcpProxy, wait_until
from tests.integration.dovecot import Account

pytestmark = pytest.mark.integration


def write_config(tmp_path: Path, account: Account, *, port: int | None = None, name: str = "maildesk.toml") -> Path:
    path = tmp_path / name
    path.write_text(f"""
[database]
url = "sqlite:///{tmp_path / 'desk.db'}"

[[addresses]]
address = "support@example.com"

[smtp]
enabled = false

[outbound]
directory = "{tmp_path / 'outbox'}"

[[imap]]
name = "support"
host = "{account.host}"
port = {port or account.port}
tls = "none"
username = "{account.username}"
password = "{account.password}"
support_address = "support@example.com"
""")
    return path


def maildesk(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "maildesk", "-c", str(config), *args],
                          capture_output=True, text=True, timeout=60, check=False)


def test_serve_turns_imap_mail_into_tickets(imap_account: Account, tmp_path: Path) -> None:
    config_path = write_config(tmp_path, imap_account)
    imap_account.append(make_mail(subject="Through the daemon"))
    with open(tmp_path / "serve.log", "wb") as log:
        daemon = subprocess.Popen([sys.executable, "-m", "maildesk", "-c", str(config_path), "serve"],
                                  stdout=log, stderr=subprocess.STDOUT)
    try:
        config = load_config(config_path)
        db = open_database(config.database)
        desk = Desk(db, config)
        deadline = time.monotonic() + 20
        while desk.ticket_count() == 0:
            assert daemon.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "no ticket:\n" + (tmp_path / "serve.log").read_text()
            time.sleep(0.05)
        assert desk.ticket(1)["subject"] == "Through the daemon"
        db.dispose()
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=20)
    assert code == 0, (tmp_path / "serve.log").read_text()
    assert imap_account.uids("INBOX") == []

    status = maildesk(config_path, "imap", "status", "--json")
    assert status.returncode == 0, status.stderr
    (row,) = json.loads(status.stdout)["items"]
    assert {k: row[k] for k in ("name", "last_uid", "fetched", "deduplicated", "failed", "skipped_uids")} == {
        "name": "support", "last_uid": 1, "fetched": 1, "deduplicated": 0, "failed": 0, "skipped_uids": [],
    }
    assert row["last_poll_at"] and row["last_error"] is None and row["uidvalidity"]


def test_imap_poll_once_from_the_command_line(imap_account: Account, tmp_path: Path) -> None:
    config_path = write_config(tmp_path, imap_account)
    imap_account.append(make_mail())
    done = maildesk(config_path, "imap", "poll")
    assert done.returncode == 0, done.stderr
    assert "imap support: fetched 1, deduplicated 0" in done.stdout
    unknown = maildesk(config_path, "imap", "poll", "sales")
    assert unknown.returncode == 2 and "no [[imap]] mailbox named sales" in unknown.stderr


def test_sigkill_between_spool_commit_and_move_makes_no_duplicate(imap_account: Account, tmp_path: Path) -> None:
    imap_account.append(make_mail(subject="Taken once"))
    # The poller reaches Dovecot through a proxy that freezes it just before its
    # MOVE reaches the server: the message is in the spool, the server knows nothing.
    proxy = TcpProxy((imap_account.host, imap_account.port), hold_on=b"MOVE").start()
    try:
        frozen = write_config(tmp_path, imap_account, port=proxy.port, name="via-proxy.toml")
        with (tmp_path / "poll.log").open("wb") as out:
            poll = subprocess.Popen([sys.executable, "-m", "maildesk", "-c", str(frozen), "imap", "poll"],
                                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_until(lambda: proxy.held.is_set() or poll.poll() is not None, what="the poller to send MOVE")
            assert proxy.held.is_set(), (tmp_path / "poll.log").read_text()
        finally:
            poll.kill()
            poll.wait(timeout=15)
    finally:
        proxy.stop()
    config = load_config(frozen)
    db = open_database(config.database)
    try:
        desk = Desk(db, config)
        assert spool.counts(db) == {spool.QUEUED: 1}
        assert imap_account.uids("INBOX") == [1] and imap_account.uids("Processed") == []

        again = maildesk(write_config(tmp_path, imap_account), "imap", "poll")  # the restarted daemon

        assert again.returncode == 0, again.stderr
        assert "imap support: fetched 1, deduplicated 1" in again.stdout
        assert imap_account.uids("INBOX") == [] and imap_account.uids("Processed") == [1]
        assert spool.counts(db) == {spool.QUEUED: 1}
        process_queued(db, config)
        assert desk.ticket_count() == 1
        assert [m["direction"] for m in desk.ticket(1)["messages"]] == ["in", "out"]  # the mail, its ack
    finally:
        db.dispose()
