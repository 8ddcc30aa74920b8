"""Outbound mail through a real SMTP relay: an aiosmtpd sink on a loopback port that
records what it receives, can refuse the next mail with 4xx/5xx, and can go down."""

from __future__ import annotations

import asyncio
import base64
import email
import socket
import ssl
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import SecretStr
from sqlalchemy import select

from maildesk import send
from maildesk.config import Config
from maildesk.models import Outbox
from tests.helpers import Desk, make_mail

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.content, policy=default)  # type: ignore[return-value]


@dataclass
class SinkHandler:
    """Records every accepted envelope; answers the next DATA or RCPT with a forced reply."""

    received: list[Received] = field(default_factory=list)
    data_replies: list[str] = field(default_factory=list)
    rcpt_replies: list[str] = field(default_factory=list)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if self.rcpt_replies:
            return self.rcpt_replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_replies:
            return self.data_replies.pop(0)
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 2.0.0 Message accepted"


class Sink:
    def __init__(self, handler: SinkHandler | None = None, **server: Any) -> None:
        self.handler = handler or SinkHandler()
        self.server = server
        """Controller arguments: ssl_context (implicit TLS), tls_context, authenticator, auth_required..."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **self.server)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def received(self) -> list[Received]:
        return self.handler.received


@pytest.fixture
def sink() -> Iterator[Sink]:
    relay = Sink()
    relay.start()
    try:
        yield relay
    finally:
        relay.stop()


@pytest.fixture
def smtp_config(config: Config, sink: Sink) -> Config:
    config.outbound.transport = "smtp"
    config.outbound.host = "127.0.0.1"
    config.outbound.port = sink.port
    config.outbound.tls = "none"
    config.outbound.timeout_seconds = 10
    return config


def rows(desk: Desk) -> list[Outbox]:
    with desk.db.session() as session:
        return list(session.scalars(select(Outbox).order_by(Outbox.id)))


def flush_at(desk: Desk, config: Config, when: datetime) -> list[send.SendResult]:
    return send.flush(desk.db, config, clock=lambda: when)


def test_the_acknowledgement_arrives_threaded_tagged_with_both_parts(desk: Desk, smtp_config: Config, sink: Sink) -> None:
    customer = make_mail(sender="Alice Customer <alice@customer.example>", subject="Printer on fire",
                         message_id="<q2@customer.example>", references="<q1@customer.example>",
                         in_reply_to="<q1@customer.example>", headers={"Thread-Index": "AQHZ0a1bC2d3e4f5g6h7i8j9k0l1mQ=="})
    outcome = desk.ingest(customer, notify=True, now=T0)

    [result] = flush_at(desk, smtp_config, T0)
    assert result.status == "sent"
    [got] = sink.received
    mail = got.message
    tag = f"[#{outcome.ticket_id}]"
    assert got.mail_from == "support@example.com" and got.rcpt_tos == ["alice@customer.example"]
    assert str(mail["From"]) == "ACME Support <support@example.com>"
    assert str(mail["To"]) == "Alice Customer <alice@customer.example>"
    assert mail["Subject"] == f"{tag} We have received your request: Printer on fire"
    assert mail["In-Reply-To"] == "<q2@customer.example>"
    assert mail["References"].split() == ["<q1@customer.example>", "<q2@customer.example>"]
    assert mail["Message-ID"] == rows(desk)[0].message_id and mail["Message-ID"].endswith("@desk.example.com>")
    assert mail["Auto-Submitted"] == "auto-replied" and mail["Precedence"] == "bulk"
    assert mail["X-Loop"] == "support@example.com" and mail["X-Auto-Response-Suppress"] == "All"
    assert mail["Thread-Topic"] == "Printer on fire"
    parent = base64.b64decode("AQHZ0a1bC2d3e4f5g6h7i8j9k0l1mQ==")
    assert base64.b64decode(mail["Thread-Index"])[:22] == parent  # a child of the customer's
    text, html = mail.get_body(("plain",)).get_content(), mail.get_body(("html",)).get_content()
    assert tag in text and tag in html and "##- Please type your reply above this line -##" in text + html
    assert "Alice Customer" in text and "Alice Customer" in html

    # The customer's reply to it lands on the same ticket.
    reply = desk.ingest(make_mail(subject="Re: " + mail["Subject"], in_reply_to=mail["Message-ID"]),
                        notify=True, now=T0 + timedelta(minutes=3))
    assert reply.ticket_id == outcome.ticket_id and not reply.created
    assert flush_at(desk, smtp_config, T0 + timedelta(minutes=3)) == []  # a follow-up is not acknowledged


def test_relay_down_then_up_delivers_exactly_once_after_backoff(desk: Desk, smtp_config: Config, sink: Sink) -> None:
    desk.ingest(make_mail(), notify=True, now=T0)
    sink.stop()

    [first] = flush_at(desk, smtp_config, T0)
    assert first.status == "queued" and "relay 127.0.0.1" in first.error
    assert rows(desk)[0].next_attempt_at == T0 + timedelta(seconds=60)
    [second] = flush_at(desk, smtp_config, T0 + timedelta(seconds=60))
    assert second.status == "queued" and rows(desk)[0].next_attempt_at == T0 + timedelta(seconds=180)
    assert flush_at(desk, smtp_config, T0 + timedelta(seconds=179)) == []  # not due yet: not even tried

    sink.start()
    [third] = flush_at(desk, smtp_config, T0 + timedelta(seconds=180))
    assert third.status == "sent"
    assert flush_at(desk, smtp_config, T0 + timedelta(hours=5)) == []
    assert len(sink.received) == 1
    [row] = rows(desk)
    assert (row.status, row.attempts, row.sent_at) == ("sent", 3, T0 + timedelta(seconds=180))


def test_451_then_250(desk: Desk, smtp_config: Config, sink: Sink) -> None:
    desk.ingest(make_mail(), notify=True, now=T0)
    sink.handler.data_replies.append("451 4.3.0 Try again later")

    [deferred] = flush_at(desk, smtp_config, T0)
    assert deferred.status == "queued" and deferred.error.startswith("451")
    assert sink.received == []
    [sent] = flush_at(desk, smtp_config, T0 + timedelta(minutes=1))
    assert sent.status == "sent" and len(sink.received) == 1


@pytest.mark.parametrize("stage", ["data", "rcpt"])
def test_550_is_a_failure_on_the_ticket_and_not_retried(desk: Desk, smtp_config: Config, sink: Sink, stage: str) -> None:
    outcome = desk.ingest(make_mail(), notify=True, now=T0)
    replies = sink.handler.data_replies if stage == "data" else sink.handler.rcpt_replies
    replies.append("550 5.1.1 No such user here")

    [failed] = flush_at(desk, smtp_config, T0)
    assert failed.status == "failed" and "550" in failed.error
    assert flush_at(desk, smtp_config, T0 + timedelta(days=2)) == []
    assert sink.received == [] and rows(desk)[0].attempts == 1
    [event] = [e for e in desk.ticket(outcome.ticket_id)["events"] if e["type"] == "delivery_failed"]
    assert "550" in event["reason"] and "alice@customer.example" in event["reason"]
    assert desk.ticket(outcome.ticket_id)["status"] == "new"


def test_given_up_after_max_age(desk: Desk, smtp_config: Config, sink: Sink) -> None:
    smtp_config.outbound.max_age_hours = 1
    desk.ingest(make_mail(), notify=True, now=T0)
    sink.stop()
    assert [r.status for r in flush_at(desk, smtp_config, T0)] == ["queued"]
    assert [r.status for r in flush_at(desk, smtp_config, T0 + timedelta(hours=1))] == ["failed"]
    assert rows(desk)[0].reason.startswith("gave up after 1 hours")


def test_one_connection_carries_several_mails(desk: Desk, smtp_config: Config, sink: Sink) -> None:
    for n in range(3):
        desk.ingest(make_mail(sender=f"c{n}@customer.example", subject=f"Question {n}"), notify=True, now=T0)
    results = flush_at(desk, smtp_config, T0)
    assert [r.status for r in results] == ["sent"] * 3
    assert sorted(r.rcpt_tos[0] for r in sink.received) == [f"c{n}@customer.example" for n in range(3)]


# -- TLS and authentication ---------------------------------------------------------------------


@dataclass
class AuthSinkHandler(SinkHandler):
    """Also speaks AUTH XOAUTH2 (the mechanism of Microsoft 365 and Gmail)."""

    token: str = "tok-123"
    logins: list[str] = field(default_factory=list)

    async def auth_XOAUTH2(self, server: Any, args: list[str]) -> AuthResult:
        if len(args) < 2:
            return AuthResult(success=False, handled=False)
        user, _, rest = base64.b64decode(args[1]).decode().partition("\x01")
        ok = rest == f"auth=Bearer {self.token}\x01\x01"
        if ok:
            self.logins.append("xoauth2 " + user.removeprefix("user="))
        return AuthResult(success=ok, handled=False)


def password_checker(handler: AuthSinkHandler) -> Any:
    def check(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"desk", b"s3cret")
        if ok:
            handler.logins.append(f"{mechanism.lower()} desk")
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself
    return check


def server_tls(files: Any) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.cert, files.key)
    return context


@pytest.fixture
def trust_test_cert(tls_files: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Our client verifies the relay's certificate; make it trust the throw-away one."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files.cert))
    return tls_files


def start_sink(**server: Any) -> Sink:
    handler = AuthSinkHandler()
    if server.pop("password_auth", False):
        server["authenticator"] = password_checker(handler)
        server["auth_exclude_mechanism"] = ["LOGIN"]  # one mechanism: one clear answer
    sink = Sink(handler, **server)
    sink.start()
    return sink


def test_starttls_and_password_login(desk: Desk, config: Config, trust_test_cert: Any) -> None:
    sink = start_sink(tls_context=server_tls(trust_test_cert), require_starttls=True, auth_required=True,
                      password_auth=True)
    try:
        config.outbound = config.outbound.model_copy(update={
            "transport": "smtp", "host": "127.0.0.1", "port": sink.port, "tls": "starttls",
            "username": "desk", "password": SecretStr("s3cret"), "timeout_seconds": 10})
        desk.ingest(make_mail(), notify=True, now=T0)
        assert [r.status for r in flush_at(desk, config, T0)] == ["sent"]
        assert len(sink.received) == 1 and sink.handler.logins == ["plain desk"]
    finally:
        sink.stop()


def test_implicit_tls_and_oauth2_token_command(desk: Desk, config: Config, trust_test_cert: Any) -> None:
    # The whole connection is TLS; aiosmtpd only knows about STARTTLS when it checks for encryption.
    sink = start_sink(ssl_context=server_tls(trust_test_cert), auth_require_tls=False)
    try:
        config.outbound = config.outbound.model_copy(update={
            "transport": "smtp", "host": "127.0.0.1", "port": sink.port, "tls": "ssl",
            "username": "support@example.com", "oauth2_token_command": f"{sys.executable} -c 'print(\"tok-123\")'",
            "timeout_seconds": 10})
        desk.ingest(make_mail(), notify=True, now=T0)
        assert [r.status for r in flush_at(desk, config, T0)] == ["sent"]
        assert len(sink.received) == 1 and sink.handler.logins == ["xoauth2 support@example.com"]
    finally:
        sink.stop()


def test_a_wrong_password_is_retried_not_a_lost_mail(desk: Desk, config: Config, trust_test_cert: Any) -> None:
    sink = start_sink(tls_context=server_tls(trust_test_cert), require_starttls=True, auth_required=True,
                      password_auth=True)
    try:
        config.outbound = config.outbound.model_copy(update={
            "transport": "smtp", "host": "127.0.0.1", "port": sink.port, "tls": "starttls",
            "username": "desk", "password": SecretStr("wrong"), "timeout_seconds": 10})
        desk.ingest(make_mail(), notify=True, now=T0)
        [result] = flush_at(desk, config, T0)
        assert result.status == "queued" and "relay refused our login: 535" in result.error
        assert sink.received == []
    finally:
        sink.stop()


def test_an_unverifiable_certificate_is_not_trusted(desk: Desk, config: Config, tls_files: Any) -> None:
    sink = start_sink(tls_context=server_tls(tls_files), require_starttls=True)
    try:
        config.outbound = config.outbound.model_copy(update={
            "transport": "smtp", "host": "127.0.0.1", "port": sink.port, "tls": "starttls", "timeout_seconds": 10})
        desk.ingest(make_mail(), notify=True, now=T0)
        [result] = flush_at(desk, config, T0)
        assert result.status == "queued" and "CERTIFICATE_VERIFY_FAILED" in result.error
        assert sink.received == []
    finally:
        sink.stop()


def test_the_service_sender_drains_the_outbox_in_the_background(desk: Desk, smtp_config: Config, sink: Sink) -> None:
    from maildesk.service import Sender

    desk.ingest(make_mail(), notify=True)

    async def run_until_delivered() -> None:
        stopping = asyncio.Event()
        task = asyncio.create_task(Sender(smtp_config, desk.db).run(stopping))
        deadline = time.monotonic() + 15
        while not sink.received and time.monotonic() < deadline and not task.done():
            await asyncio.sleep(0.02)
        stopping.set()
        await asyncio.wait_for(task, timeout=15)

    asyncio.run(run_until_delivered())
    assert len(sink.received) == 1 and [r.status for r in rows(desk)] == ["sent"]
