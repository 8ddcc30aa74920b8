"""Benchmark, run by hand: how long the IMAP poller takes to bring N messages
from a real Dovecot into the spool (FETCH in batches, spool commit, MOVE).

    .venv/bin/python bench/imap.py [--messages 2000] [--batch 50 --batch 1 ...]

Starts a private Dovecot like the integration tests do (needs dovecot-imapd
and root), APPENDs the messages to a fresh mailbox for each batch size, and
times one ``MailboxPoller.run_once()`` against an empty SQLite database.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from maildesk.config import parse_config  # noqa: E402
from maildesk.db import open_database  # noqa: E402
from maildesk.receive.imap import MailboxPoller  # noqa: E402
from tests.helpers import make_mail  # noqa: E402
from tests.integration.dovecot import DovecotServer  # noqa: E402


def fill(account, count: int) -> None:  # noqa: ANN001
    with account.client() as client:
        chunk = 200
        for start in range(0, count, chunk):
            mails = [make_mail(subject=f"Bench {n}", body=f"Message {n}\n" + "text " * 300)
                     for n in range(start, min(count, start + chunk))]
            client.multiappend("INBOX", mails)


def run(server: DovecotServer, messages: int, batch: int, workdir: Path) -> None:
    account = server.new_account()
    fill(account, messages)
    config = parse_config({
        "database": {"url": f"sqlite:///{workdir / f'bench-{batch}.db'}"},
        "imap": [{"name": "bench", "host": account.host, "port": account.port, "tls": "none",
                  "username": account.username, "password": account.password, "batch_size": batch}],
    })
    db = open_database(config.database)
    poller = MailboxPoller(config.imap[0], db)
    began = time.perf_counter()
    result = poller.run_once()
    elapsed = time.perf_counter() - began
    assert result.fetched == messages, result
    assert account.uids("INBOX") == []
    print(f"batch {batch:>4}: {messages} messages in {elapsed:6.2f} s  "
          f"({messages / elapsed:7.0f} messages/s, fetched, spooled and moved)")
    db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--batch", type=int, action="append", help="batch size(s); default 50 and 1")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    server = DovecotServer()
    try:
        server.start()
        with tempfile.TemporaryDirectory() as workdir:
            for batch in args.batch or [50, 1]:
                run(server, args.messages, batch, Path(workdir))
    finally:
        server.remove()


if __name__ == "__main__":
    main()
