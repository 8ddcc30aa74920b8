"""``maildesk serve`` as systemd runs it, as a real subprocess: READY=1 only once
the SMTP port takes connections, WATCHDOG=1 at half of WATCHDOG_USEC, STATUS=
lines; SIGHUP (through ``maildesk reload``) takes a new template, a broken
config is refused and the daemon goes on with the old one; /metrics counts
what was sent; /healthz turns 503 when the database goes away and 200 when it
is back; SIGTERM exits 0 with nothing half-done."""

from __future__ import annotations

import email
import json
import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select
from sqlalchemy.engine import make_url

from maildesk import spool
from maildesk.config import parse_config
from maildesk.db import Database
from maildesk.models import Outbox
from tests.conftest import ONLY_POSTGRESQL
from tests.helpers import Desk, make_mail
from tests.integration.conftest import TcpProxy, wait_until
from tests.integration.dovecot import Account

pytestmark = pytest.mark.integration

CUSTOMER = "alice@customer.example"
STATUS_LINE = re.compile(r"^STATUS=\d+ queued, \d+ failed, outbox \d+")


@dataclass
class FakeSystemd:
    """The notification socket systemd would give us: an abstract datagram socket, read in a thread."""

    name: str = field(default_factory=lambda: f"maildesk-test-{uuid.uuid4().hex}")
    messages: list[tuple[float, str]] = field(default_factory=list)
    on_ready: Callable[[], Any] | None = None
    """Called in the reading thread the moment the first READY=1 arrives; its result goes to ``at_ready``."""
    at_ready: Any = None

    def __post_init__(self) -> None:
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind("\0" + self.name)
        self.socket.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return "@" + self.name

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.socket.recv(4096)
            except TimeoutError:
                continue
            if self.on_ready is not None and "READY=1" in data.decode().split("\n"):
                self.at_ready, self.on_ready = self.on_ready(), None
            self.messages.append((time.monotonic(), data.decode()))

    def lines(self, since: int = 0) -> list[str]:
        return [line for _, message in self.messages[since:] for line in message.split("\n")]

    def wait_for(self, line: str, *, since: int = 0, what: str | None = None) -> int:
        """Wait for a message holding ``line`` after message number ``since``; return the count after it."""
        def seen() -> int | None:
            for n, (_, message) in enumerate(self.messages[since:], since):
                if line in message.split("\n"):
                    return n + 1
            return None
        return wait_until(seen, what=what or line)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.socket.close()


def toml(data: dict[str, Any]) -> str:
    lines = []
    for section, values in data.items():
        for item in values if isinstance(values, list) else [values]:
            lines.append(f"[[{section}]]" if isinstance(values, list) else f"[{section}]")
            lines += [f"{key} = {json.dumps(value)}" for key, value in item.items()]
    return "\n".join(lines) + "\n"


def service_config(config_data: dict, tmp_path: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    data = {
        **config_data,
        "smtp": {"host": "127.0.0.1", "port": 0},
        "http": {"enabled": True, "host": "127.0.0.1", "port": 0},
        "service": {"pid_file": str(tmp_path / "run" / "maildesk.pid"), "stop_timeout_seconds": 10},
        "logging": {"format": "json"},
    }
    data["outbound"] = {**data["outbound"], "templates": str(tmp_path / "templates")}
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    (tmp_path / "templates" / "ack").mkdir(parents=True, exist_ok=True)
    return data


@dataclass
class Daemon:
    process: subprocess.Popen[bytes]
    log: Path
    smtp_port: int
    http_port: int

    def logged(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().split("\n")[:-1] if line.startswith("{")]

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def send(self, subject: str) -> bytes:
        raw = make_mail(subject=subject)
        self.send_raw(raw)
        return raw

    def send_raw(self, raw: bytes) -> None:
        with smtplib.SMTP("127.0.0.1", self.smtp_port) as client:
            assert client.sendmail(CUSTOMER, ["support@example.com"], raw) == {}


def _ports(log: Path) -> tuple[int, int] | None:
    """The SMTP and HTTP ports (0: not enabled), once the daemon says it is running."""
    smtp = http = 0
    for line in log.read_text().split("\n")[:-1]:
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("msg") == "listening":
                smtp = int(entry["port"])
            elif entry.get("msg") == "http listening":
                http = int(entry["port"])
            elif entry.get("msg") == "maildesk running":
                return smtp, http
    return None


@contextmanager
def serve(config_file: Path, log: Path, env: dict[str, str]) -> Iterator[Daemon]:
    with log.open("ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "maildesk", "-c", str(config_file), "serve"],
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env={**os.environ, **env})
    try:
        ports = wait_until(lambda: process.poll() is not None or _ports(log), what="maildesk serve to listen")
        assert process.poll() is None, log.read_text()
        yield Daemon(process, log, *ports)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=15)


def ack_subjects(outbox: Path) -> list[str]:
    return [str(email.message_from_bytes(path.read_bytes())["Subject"]) for path in sorted(outbox.glob("*.eml"))]


def metric_values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_serve_under_systemd_notify_reload_metrics_and_stop(config_data: dict, db: Database, tmp_path: Path) -> None:
    data = service_config(config_data, tmp_path)
    config_file = tmp_path / "maildesk.toml"
    config_file.write_text(toml(data))
    template = tmp_path / "templates" / "ack" / "subject.txt"
    template.write_text("{{ tag }} Version one: {{ ticket.subject }}\n")
    outbox = Path(data["outbound"]["directory"])
    desk = Desk(db, parse_config(config_data))
    log = tmp_path / "serve.log"

    def smtp_answers() -> bool:
        """At the moment READY=1 arrives: the port is known and takes a connection."""
        ports = _ports(log)
        if not ports or not ports[0]:
            return False
        with socket.create_connection(("127.0.0.1", ports[0]), timeout=5):
            return True

    systemd = FakeSystemd(on_ready=smtp_answers)
    try:
        with serve(config_file, log, {"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": "1000000"}) as daemon:
            ready = systemd.wait_for("READY=1")
            assert systemd.at_ready is True
            assert not any("READY=1" in m for _, m in systemd.messages[: ready - 1])
            assert any(STATUS_LINE.match(line) for line in systemd.lines())
            # WATCHDOG=1 every half second (WATCHDOG_USEC is one second): several come while we wait.
            wait_until(lambda: systemd.lines(ready).count("WATCHDOG=1") >= 3, what="three watchdog pings")

            daemon.send("First request")
            wait_until(lambda: len(ack_subjects(outbox)) == 1, what="the first acknowledgement")
            assert ack_subjects(outbox) == ["[#1] Version one: First request"]

            # An edit on disk is not taken until the reload: the running set is a validated snapshot.
            template.write_text("{{ tag }} Version two: {{ ticket.subject }}\n")
            daemon.send("Second request")
            wait_until(lambda: len(ack_subjects(outbox)) == 2, what="the second acknowledgement")
            assert ack_subjects(outbox)[1] == "[#2] Version one: Second request"

            before = len(systemd.messages)
            reload = subprocess.run([sys.executable, "-m", "maildesk", "-c", str(config_file), "reload"],
                                    capture_output=True, text=True, timeout=30)
            assert reload.returncode == 0, reload.stderr
            after_reload = systemd.wait_for("RELOADING=1", since=before)
            systemd.wait_for("READY=1", since=after_reload)
            daemon.send("Third request")
            wait_until(lambda: len(ack_subjects(outbox)) == 3, what="the third acknowledgement")
            assert ack_subjects(outbox)[2] == "[#3] Version two: Third request"

            # A broken config: refused with its reason in one line; everything runs on as before.
            config_file.write_text(toml({**data, "smtp": {**data["smtp"], "portt": 1}}))
            before = len(systemd.messages)
            daemon.process.send_signal(signal.SIGHUP)
            systemd.wait_for("READY=1", since=systemd.wait_for("RELOADING=1", since=before))
            [refused] = [e for e in daemon.logged() if e["msg"].startswith("reload failed")]
            assert "smtp.portt: unknown key" in refused["error"] and "\n" not in refused["error"]
            fourth = daemon.send("Fourth request")
            wait_until(lambda: len(ack_subjects(outbox)) == 4, what="the fourth acknowledgement")
            assert ack_subjects(outbox)[3] == "[#4] Version two: Fourth request"
            daemon.send_raw(fourth)  # the same bytes again: accepted, stored once

            sent = ("maildesk_outbox_mail_total", (("kind", "ack"), ("status", "sent")))
            # The .eml is on disk a moment before the sender's result reaches the counters.
            values = wait_until(lambda: (v := metric_values(daemon.get("/metrics")[1].decode())).get(sent) == 4 and v,
                                what="four acks counted as sent")
            assert values[("maildesk_messages_received_total", (("source", "smtp"),))] == 5
            assert values[("maildesk_messages_received_duplicate_total", (("source", "smtp"),))] == 1
            assert values[("maildesk_messages_processed_total", ())] == 4
            assert values[("maildesk_tickets_created_total", ())] == 4
            assert values[("maildesk_messages_failed_total", ())] == 0
            assert values[("maildesk_outbox_mail_total", (("kind", "ack"), ("status", "queued")))] == 4
            assert values[("maildesk_processing_seconds_count", ())] == 4
            assert values[("maildesk_accepted_to_ticket_seconds_count", ())] == 4
            assert values[("maildesk_smtp_sessions_total", ())] >= 5
            assert values[("maildesk_smtp_replies_total", (("code", "354"),))] == 5

            status, body = daemon.get("/healthz")
            health = json.loads(body)
            assert status == 200 and health["status"] == "ok" and health["listener"]["bound"]
            assert health["spool"]["failed"] == 0 and health["outbox"]["queued"] == 0

            before = len(systemd.messages)
            daemon.process.send_signal(signal.SIGTERM)
            assert daemon.process.wait(timeout=30) == 0, daemon.log.read_text()
        systemd.wait_for("STOPPING=1", since=before)
    finally:
        systemd.close()
    assert spool.counts(db) == {spool.DONE: 4} and desk.ticket_count() == 4
    assert not (tmp_path / "run" / "maildesk.pid").exists()


def test_sigterm_answers_421_to_new_sessions_and_finishes_the_message_in_hand(
    config_data: dict, db: Database, tmp_path: Path
) -> None:
    data = service_config(config_data, tmp_path)
    config_file = tmp_path / "maildesk.toml"
    config_file.write_text(toml(data))
    with serve(config_file, tmp_path / "serve.log", {}) as daemon:
        client = smtplib.SMTP("127.0.0.1", daemon.smtp_port)
        client.ehlo()
        client.mail(CUSTOMER)
        client.rcpt("support@example.com")
        assert client.docmd("DATA")[0] == 354
        client.send(make_mail(subject="In hand at the SIGTERM")[:200])  # half of the message so far
        daemon.process.send_signal(signal.SIGTERM)
        wait_until(lambda: any(e["msg"] == "stopping" for e in daemon.logged()), what="the daemon to begin stopping")
        with smtplib.SMTP() as late:
            code, _ = late.connect("127.0.0.1", daemon.smtp_port)
        assert code == 421
        raw = make_mail(subject="In hand at the SIGTERM")
        client.send(raw[200:].replace(b"\n", b"\r\n") + b"\r\n.\r\n")
        code, _ = client.getreply()
        assert code == 250
        client.close()
        assert daemon.process.wait(timeout=30) == 0, daemon.log.read_text()
    assert spool.counts(db).get(spool.QUEUED, 0) + spool.counts(db).get(spool.DONE, 0) == 1


def test_a_mail_stuck_on_a_silent_relay_is_handed_back_at_stop(config_data: dict, db: Database, tmp_path: Path) -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # takes connections, never greets
    try:
        relay = {"transport": "smtp", "host": "127.0.0.1", "port": silent.getsockname()[1], "timeout_seconds": 60}
        data = service_config(config_data, tmp_path, outbound=relay, service={"stop_timeout_seconds": 2})
        config_file = tmp_path / "maildesk.toml"
        config_file.write_text(toml(data))
        with serve(config_file, tmp_path / "serve.log", {}) as daemon:
            daemon.send("Acknowledge me")
            attempts = select(Outbox.attempts)
            wait_until(lambda: _scalar(db, attempts) == 1, what="the sender to claim the acknowledgement")
            daemon.process.send_signal(signal.SIGTERM)
            assert daemon.process.wait(timeout=30) == 0, daemon.log.read_text()
            assert any(e["msg"].startswith("mail being sent handed back") for e in daemon.logged())
    finally:
        silent.close()
    with db.session() as session:
        [row] = session.scalars(select(Outbox)).all()
        assert row.status == "queued" and row.next_attempt_at <= datetime.now(UTC)  # due now, not after a lease


def _scalar(db: Database, query: Any) -> Any:
    with db.session() as session:
        return session.scalar(query)


@ONLY_POSTGRESQL
def test_healthz_turns_503_while_the_database_is_away(config_data: dict, tmp_path: Path) -> None:
    url = make_url(config_data["database"]["url"])
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432)).start()
    try:
        through = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        data = service_config({**config_data, "database": {**config_data["database"], "url": through}}, tmp_path)
        config_file = tmp_path / "maildesk.toml"
        config_file.write_text(toml(data))
        with serve(config_file, tmp_path / "serve.log", {}) as daemon:
            status, body = daemon.get("/healthz")
            assert status == 200, body
            assert json.loads(body)["database"] == {"reachable": True, "error": None}

            proxy.stop()
            status, body = daemon.get("/healthz")
            health = json.loads(body)
            assert status == 503 and health["status"] == "unhealthy"
            assert health["database"]["reachable"] is False and health["database"]["error"]
            assert health["listener"]["bound"] is True
            assert health["attention"][0].startswith("the database cannot be reached")

            proxy.start()
            status, body = daemon.get("/healthz")
            assert status == 200, body
            daemon.process.send_signal(signal.SIGTERM)
            assert daemon.process.wait(timeout=30) == 0, daemon.log.read_text()
    finally:
        proxy.stop()


def test_reload_without_a_running_daemon_is_a_one_line_error(tmp_path: Path) -> None:
    config_file = tmp_path / "maildesk.toml"
    config_file.write_text(toml({"service": {"pid_file": str(tmp_path / "nope.pid")}}))
    result = subprocess.run([sys.executable, "-m", "maildesk", "-c", str(config_file), "reload"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert result.stderr.strip() == f"maildesk: no pid file at {tmp_path / 'nope.pid'}: " \
                                    "is `maildesk serve` running (with this config)?"


def test_imap_mail_is_counted_and_its_mailbox_shown(
    imap_account: Account, config_data: dict, db: Database, tmp_path: Path
) -> None:
    data = service_config(config_data, tmp_path, smtp={"enabled": False})
    data["imap"] = [{"name": "support", "host": imap_account.host, "port": imap_account.port, "tls": "none",
                     "username": imap_account.username, "password": imap_account.password,
                     "support_address": "support@example.com"}]
    config_file = tmp_path / "maildesk.toml"
    config_file.write_text(toml(data))
    imap_account.append(make_mail(subject="Through IMAP"))
    desk = Desk(db, parse_config(config_data))
    with serve(config_file, tmp_path / "serve.log", {}) as daemon:
        wait_until(lambda: desk.ticket_count() == 1, what="the IMAP mail's ticket")
        health = wait_until(lambda: (h := json.loads(daemon.get("/healthz")[1]))["mailboxes"][0]["last_poll_at"] and h,
                            what="the mailbox's poll to be recorded")
        assert health["status"] == "ok" and health["listener"] == {"enabled": False, "bound": False, "address": None}
        [box] = health["mailboxes"]
        assert box["name"] == "support" and box["last_error"] is None and box["seconds_since_poll"] >= 0
        values = metric_values(daemon.get("/metrics")[1].decode())
        assert values[("maildesk_messages_received_total", (("source", "imap:support"),))] == 1
        assert values[("maildesk_imap_seconds_since_poll", (("mailbox", "support"),))] >= 0
        daemon.process.send_signal(signal.SIGTERM)
        assert daemon.process.wait(timeout=30) == 0, daemon.log.read_text()
    shown = subprocess.run([sys.executable, "-m", "maildesk", "-c", str(config_file), "status"],
                           capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"^mailboxes     support: last poll \d+ s ago$", shown.stdout, re.MULTILINE), shown.stdout
