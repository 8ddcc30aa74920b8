"""Nothing lost, nothing twice: 451 while the database cannot commit (SQLite
locked, PostgreSQL unreachable), a ``maildesk serve`` killed (SIGKILL) after
its 250 processes the mail exactly once after a restart, and a listener that
cannot start says why."""

from __future__ import annotations

import json
import signal
import smtplib
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from maildesk import spool
from maildesk.config import parse_config
from maildesk.db import Database, open_database
from maildesk.models import Outbox
from maildesk.process import process_queued
from tests.helpers import Desk, make_mail
from tests.integration.conftest import RunningListener, TcpProxy, wait_until

pytestmark = pytest.mark.integration

CUSTOMER = "alice@customer.example"


@contextmanager
def database_outage(database_url: str, tmp_path: Path) -> Iterator[tuple[str, Callable[[], Any]]]:
    """A database URL for the listener, and a call that makes the database unavailable
    (the next call ends the outage): SQLite held locked by another writer past the busy
    timeout; PostgreSQL cut off behind a TCP forwarder."""
    if database_url.startswith("sqlite"):
        holder = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
        states = iter([lambda: holder.execute("BEGIN IMMEDIATE"), lambda: holder.execute("ROLLBACK")])
        try:
            yield database_url, lambda: next(states)()
        finally:
            holder.close()
        return
    url = make_url(database_url)
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432)).start()
    states = iter([proxy.stop, proxy.start])
    try:
        yield url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False), lambda: next(states)()
    finally:
        proxy.stop()


def test_database_unavailable_answers_451_then_the_retry_makes_one_ticket(
    database_url: str, tmp_path: Path
) -> None:
    with database_outage(database_url, tmp_path) as (url, toggle_outage):
        config = parse_config({
            "database": {"url": url, "busy_timeout_seconds": 0.2},
            "addresses": [{"address": "support@example.com"}],
            "outbound": {"directory": str(tmp_path / "outbox")},
            "smtp": {"port": 0},
        })
        db = open_database(config.database)
        listener = RunningListener(config, db).start()
        try:
            raw = make_mail(subject="Sent while the database was unavailable")
            toggle_outage()
            with smtplib.SMTP(listener.host, listener.port) as client:
                with pytest.raises(smtplib.SMTPDataError) as refused:
                    client.sendmail(CUSTOMER, ["support@example.com"], raw)
            assert refused.value.smtp_code == 451
            assert refused.value.smtp_error.startswith(b"4.3.0 ")
            toggle_outage()
            desk = Desk(db, config)
            assert spool.counts(db) == {} and desk.ticket_count() == 0  # nothing half-stored

            with smtplib.SMTP(listener.host, listener.port) as client:  # the sender's retry
                assert client.sendmail(CUSTOMER, ["support@example.com"], raw) == {}
            process_queued(db, config)
            assert desk.ticket_count() == 1 and spool.counts(db) == {spool.DONE: 1}
        finally:
            listener.stop()
            db.dispose()


def write_config(path: Path, config_data: dict, *, processor: bool) -> Path:
    """A TOML config file for a ``maildesk serve`` subprocess (values written as JSON, which TOML reads)."""
    lines = ["[database]", f"url = {json.dumps(config_data['database']['url'])}",
             "[desk]", 'domain = "desk.example.com"',
             "[smtp]", 'host = "127.0.0.1"', "port = 0",
             "[processor]", f"enabled = {'true' if processor else 'false'}",
             "[outbound]", f"directory = {json.dumps(config_data['outbound']['directory'])}",
             "[logging]", 'format = "json"']
    for address in config_data["addresses"]:
        lines += ["[[addresses]]", f"address = {json.dumps(address['address'])}",
                  f"queue = {json.dumps(address['queue'])}"]
    path.write_text("\n".join(lines) + "\n")
    return path


@contextmanager
def serve(config_file: Path, log: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """Run ``maildesk serve`` (port 0) until it logs its port; kill it at the end if still running."""
    with log.open("ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "maildesk", "-c", str(config_file), "serve"],
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        port = wait_until(lambda: process.poll() is not None or _logged_port(log), what="maildesk serve to listen")
        assert process.poll() is None, log.read_text()
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=15)


def _logged_port(log: Path) -> int | None:
    for line in log.read_text().split("\n")[:-1]:  # whole lines only
        if line.startswith("{") and json.loads(line).get("msg") == "listening":
            return int(json.loads(line)["port"])
    return None


def test_sigkill_after_250_then_restart_processes_exactly_once(
    config_data: dict, db: Database, tmp_path: Path
) -> None:
    desk = Desk(db, parse_config(config_data))
    raw = make_mail(subject="Accepted just before the crash")

    # First run accepts but does not process, so the kill lands between the two.
    accept_only = write_config(tmp_path / "accept.toml", config_data, processor=False)
    with serve(accept_only, tmp_path / "accept.log") as (process, port):
        with smtplib.SMTP("127.0.0.1", port) as client:
            assert client.sendmail(CUSTOMER, ["support@example.com"], raw) == {}
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=15) == -signal.SIGKILL
    assert spool.counts(db) == {spool.QUEUED: 1}
    assert desk.ticket_count() == 0

    full = write_config(tmp_path / "full.toml", config_data, processor=True)
    log = tmp_path / "full.log"
    with serve(full, log) as (process, _port):
        wait_until(lambda: spool.counts(db) == {spool.DONE: 1}, what="the spooled message to be processed")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0, log.read_text()
    [row] = spool.list_inbound(db)
    assert desk.ticket_count() == 1
    assert [m["direction"] for m in desk.ticket(row.ticket_id)["messages"]].count("in") == 1
    with db.session() as session:
        assert session.scalars(select(Outbox.kind)).all() == ["ack"]  # one acknowledgement, not two
    assert '"msg": "maildesk stopped"' in log.read_text()


def test_sigkill_in_the_middle_of_processing_then_restart_processes_each_exactly_once(
    config_data: dict, db: Database, tmp_path: Path
) -> None:
    desk = Desk(db, parse_config(config_data))
    count = 200
    with serve(write_config(tmp_path / "accept.toml", config_data, processor=False), tmp_path / "accept.log") as (
        process, port
    ):
        with smtplib.SMTP("127.0.0.1", port) as client:
            for n in range(count):
                assert client.sendmail(CUSTOMER, ["support@example.com"],
                                       make_mail(subject=f"Request {n}", message_id=f"<kill-{n}@c.example>")) == {}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0

    full = write_config(tmp_path / "full.toml", config_data, processor=True)
    with serve(full, tmp_path / "first.log") as (process, _port):
        # Killed while the processor is at work: wherever it is, its transaction is lost whole.
        wait_until(lambda: desk.ticket_count() > 0, what="processing to begin")
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=15) == -signal.SIGKILL
    at_kill = spool.counts(db)
    assert at_kill.get(spool.QUEUED, 0) > 0, f"all {count} were processed before the kill: {at_kill}"

    with serve(full, tmp_path / "second.log") as (process, _port):
        wait_until(lambda: spool.counts(db) == {spool.DONE: count}, what="every message to be processed")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    assert desk.ticket_count() == count
    with db.session() as session:
        assert session.scalars(select(Outbox.kind)).all() == ["ack"] * count


def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    config_data = {"database": {"url": f"sqlite:///{tmp_path / 'db.sqlite'}"},
                   "outbound": {"directory": str(tmp_path / "outbox")},
                   "addresses": [{"address": "support@example.com", "queue": "support"}]}
    config_file = write_config(tmp_path / "taken.toml", config_data, processor=True)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config_file.write_text(config_file.read_text().replace("port = 0", f"port = {port}"))
        result = subprocess.run([sys.executable, "-m", "maildesk", "-c", str(config_file), "serve"],
                                capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert f"maildesk: smtp.host/smtp.port: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
