"""The SMTP listener against real clients (smtplib, swaks): what is accepted,
what is refused with which code, and what lands in the spool."""

from __future__ import annotations

import smtplib
import socket
import subprocess
from pathlib import Path

import pytest

from maildesk import spool
from maildesk.db import Database
from maildesk.models import Inbound
from maildesk.process import process_queued
from tests.helpers import Desk, make_mail, raising
from tests.integration.conftest import RunningListener, StartListener, wait_until

pytestmark = pytest.mark.integration

CUSTOMER = "alice@customer.example"


def only_row(db: Database) -> Inbound:
    """The one spooled message."""
    rows = spool.list_inbound(db)
    assert len(rows) == 1, rows
    return rows[0]


def crlf(raw: bytes) -> bytes:
    """The message with CRLF line ends, as SMTP clients send it (smtplib adds none to bytes)."""
    return raw.replace(b"\n", b"\r\n")


def test_single_message_is_spooled_with_its_envelope(listener: RunningListener, db: Database, desk: Desk) -> None:
    raw = crlf(make_mail(subject="Printer on fire"))
    with smtplib.SMTP(listener.host, listener.port, local_hostname="client.example") as client:
        refused = client.sendmail(CUSTOMER, ["support@example.com"], raw)
        code, reply = client.noop()
    assert refused == {} and code == 250

    row = only_row(db)
    assert spool.raw_of(db, row.id) == raw and row.source == "smtp" and row.state == spool.QUEUED
    assert row.envelope == {
        "mail_from": CUSTOMER,
        "rcpt_to": ["support@example.com"],
        "client_address": "127.0.0.1",
        "helo": "client.example",
        "tls": False,
        "protocol": "smtp",
    }
    assert listener.accepted == [row.id]

    [outcome] = process_queued(db, listener.config)
    assert desk.ticket(outcome.ticket_id)["subject"] == "Printer on fire"


def test_the_reply_names_the_spooled_message(listener: RunningListener, db: Database) -> None:
    with smtplib.SMTP(listener.host, listener.port) as client:
        client.ehlo()
        assert client.mail(CUSTOMER) == (250, b"2.1.0 OK")
        assert client.rcpt("support@example.com") == (250, b"2.1.5 OK")
        code, reply = client.data(make_mail())
    assert (code, reply) == (250, f"2.0.0 OK queued as {only_row(db).id}".encode())


def test_swaks_message_with_attachment(listener: RunningListener, swaks: str, db: Database, desk: Desk,
                                       tmp_path: Path) -> None:
    attachment = tmp_path / "invoice.pdf"
    attachment.write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 40)
    result = subprocess.run(
        [swaks, "--server", listener.host, "--port", str(listener.port), "--from", CUSTOMER,
         "--to", "support@example.com", "--header", "Subject: Invoice attached",
         "--body", "Please find the invoice attached.", "--attach", f"@{attachment}"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "<-  250 2.0.0 OK queued as" in result.stdout

    [outcome] = process_queued(db, listener.config)
    ticket = desk.ticket(outcome.ticket_id)
    [message] = [m for m in ticket["messages"] if m["direction"] == "in"]
    assert [a["filename"] for a in message["attachments"]] == ["invoice.pdf"]
    assert message["attachments"][0]["size"] == attachment.stat().st_size


def test_unknown_recipient_refused_others_accepted(listener: RunningListener, db: Database) -> None:
    with smtplib.SMTP(listener.host, listener.port) as client:
        client.ehlo()
        client.mail(CUSTOMER)
        assert client.rcpt("support@example.com")[0] == 250
        code, reply = client.rcpt("someone@elsewhere.example")
        assert (code, reply) == (550, b"5.1.1 <someone@elsewhere.example>: no such mailbox here")
        assert client.rcpt("Billing@Example.com")[0] == 250
        assert client.data(make_mail())[0] == 250
    assert only_row(db).envelope["rcpt_to"] == ["support@example.com", "Billing@Example.com"]


def test_never_an_open_relay(listener: RunningListener, db: Database) -> None:
    with smtplib.SMTP(listener.host, listener.port) as client:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            client.sendmail(CUSTOMER, ["victim@gmail.com", "support@example.com.evil.example"], make_mail())
    assert {code for code, _ in refused.value.recipients.values()} == {550}
    assert spool.list_inbound(db) == []


def test_sub_addresses_and_the_note_address_are_served(start_listener: StartListener, db: Database) -> None:
    listener = start_listener(desk={"note_address": "notes@example.com"})
    with smtplib.SMTP(listener.host, listener.port) as client:
        assert client.sendmail(CUSTOMER, ["support+ticket-12@example.com"], make_mail()) == {}
        assert client.sendmail("agent@example.com", ["notes@example.com"], make_mail()) == {}
    assert len(spool.list_inbound(db)) == 2


def test_envelope_recipient_decides_the_queue(listener: RunningListener, db: Database, desk: Desk) -> None:
    # Bcc'd (or forwarded) to billing: the To: header names the support address.
    with smtplib.SMTP(listener.host, listener.port) as client:
        client.sendmail(CUSTOMER, ["billing@example.com"], make_mail(to="support@example.com"))
    [outcome] = process_queued(db, listener.config)
    assert desk.ticket(outcome.ticket_id)["queue"] == "billing"


def test_too_many_recipients_get_452(start_listener: StartListener) -> None:
    listener = start_listener(smtp={"max_recipients": 2})
    with smtplib.SMTP(listener.host, listener.port) as client:
        client.ehlo()
        client.mail(CUSTOMER)
        assert client.rcpt("support@example.com")[0] == 250
        assert client.rcpt("billing@example.com")[0] == 250
        assert client.rcpt("support+x@example.com") == (452, b"4.5.3 Too many recipients")


def test_oversize_is_refused_at_mail_and_at_data(start_listener: StartListener, db: Database) -> None:
    listener = start_listener(smtp={"max_message_size": 2000})
    big = make_mail(body=("x" * 70 + "\n") * 100)
    assert len(big) > 2000
    with smtplib.SMTP(listener.host, listener.port) as client:
        client.ehlo()
        assert client.esmtp_features["size"] == "2000"
        # A client that declares the size is refused before it sends the message...
        with pytest.raises(smtplib.SMTPSenderRefused) as declared:
            client.sendmail(CUSTOMER, ["support@example.com"], big)
        assert (declared.value.smtp_code, declared.value.smtp_error) == (552, b"5.3.4 Message too big for system")
        client.rset()
        # ...one that does not is refused after the end of DATA, and the session goes on.
        client.mail(CUSTOMER)
        client.rcpt("support@example.com")
        assert client.data(big) == (552, b"5.3.4 Message too big for system")
        assert client.sendmail(CUSTOMER, ["support@example.com"], make_mail()) == {}
    assert len(spool.list_inbound(db)) == 1


def test_bytes_are_stored_as_received(listener: RunningListener, db: Database) -> None:
    """Bare LF and CRLF, 8-bit UTF-8, a line far over 998 octets, dot-stuffed lines, SMTPUTF8."""
    raw = (
        "From: Zoë <zoë@exämple.com>\n"
        "To: support@example.com\n"
        "Subject: Grüße\r\n"
        "Content-Type: text/plain; charset=utf-8\n"
        "Content-Transfer-Encoding: 8bit\n"
        "\n"
        "Ünïcödé body, bare LF line\n"
        ".a line starting with a dot\r\n"
        "..two dots\n"
        f"{'long ' * 1000}\r\n"
        ".\n"
        "last line\r\n"
    ).encode()
    with smtplib.SMTP(listener.host, listener.port) as client:
        client.ehlo()
        assert client.has_extn("8bitmime") and client.has_extn("smtputf8")
        refused = client.sendmail("zoë@exämple.com", ["support@example.com"], raw,
                                  mail_options=["SMTPUTF8", "BODY=8BITMIME"])
    assert refused == {}
    row = only_row(db)
    assert spool.raw_of(db, row.id) == raw
    assert row.envelope["mail_from"] == "zoë@exämple.com"


def test_a_bare_lf_dot_does_not_end_the_message(listener: RunningListener, db: Database) -> None:
    # "\n.\r\n" and "\r\n.\n" are content, not the end of DATA (no SMTP smuggling); like
    # Postfix, a leading dot is taken as dot-stuffing after any line end.
    with socket.create_connection((listener.host, listener.port)) as sock:
        stream = sock.makefile("rwb")
        for line in [b"EHLO c\r\n", b"MAIL FROM:<a@b.example>\r\n", b"RCPT TO:<support@example.com>\r\n", b"DATA\r\n"]:
            stream.write(line)
        stream.write(b"Subject: one\r\n\r\nfirst\n.\r\nMAIL FROM:<x@y.example>\r\n.\nsecond\r\n.\r\nQUIT\r\n")
        stream.flush()
        replies = [stream.readline() for _ in range(12)]
        stream.close()
    data_replies = [r for r in replies if r.startswith((b"250 2.0.0", b"250 2.1.0"))]
    assert len(data_replies) == 2  # MAIL FROM, then the one message
    stored = spool.raw_of(db, only_row(db).id)
    assert stored == b"Subject: one\r\n\r\nfirst\n\r\nMAIL FROM:<x@y.example>\r\n\nsecond\r\n"


def test_connection_limit_answers_421(start_listener: StartListener) -> None:
    listener = start_listener(smtp={"max_connections": 1})
    with smtplib.SMTP(listener.host, listener.port) as first:
        first.ehlo()
        with pytest.raises(smtplib.SMTPConnectError) as busy:
            smtplib.SMTP(listener.host, listener.port)
        assert busy.value.smtp_code == 421
    wait_until(lambda: _greeting(listener).startswith(b"220"), what="the slot to be free again")


def _greeting(listener: RunningListener) -> bytes:
    with socket.create_connection((listener.host, listener.port)) as sock:
        return sock.recv(200)


def test_idle_sessions_are_closed(start_listener: StartListener) -> None:
    listener = start_listener(smtp={"idle_timeout_seconds": 0.3})
    with socket.create_connection((listener.host, listener.port)) as sock:
        sock.settimeout(10)
        assert sock.recv(200).startswith(b"220")
        assert sock.recv(200) == b""  # the server hung up


def test_empty_message_is_refused(listener: RunningListener, db: Database) -> None:
    with smtplib.SMTP(listener.host, listener.port) as client:
        client.ehlo()
        client.mail(CUSTOMER)
        client.rcpt("support@example.com")
        assert client.data(b"")[0] == 554
    assert spool.list_inbound(db) == []


def swaks_send(swaks: str, listener: RunningListener, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([swaks, "--server", listener.host, "--port", str(listener.port), "--from", CUSTOMER,
                           *args], capture_output=True, text=True, timeout=60)


def test_swaks_single_message(listener: RunningListener, swaks: str, db: Database, desk: Desk) -> None:
    result = swaks_send(swaks, listener, "--to", "support@example.com", "--header", "Subject: Sent by swaks")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"<-  250 2.0.0 OK queued as {only_row(db).id}" in result.stdout
    [outcome] = process_queued(db, listener.config)
    assert desk.ticket(outcome.ticket_id)["subject"] == "Sent by swaks"


def test_swaks_unknown_recipient_refused_the_other_accepted(listener: RunningListener, swaks: str,
                                                             db: Database) -> None:
    result = swaks_send(swaks, listener, "--to", "nobody@elsewhere.example,support@example.com")
    assert "<** 550 5.1.1 <nobody@elsewhere.example>: no such mailbox here" in result.stdout
    assert "<-  250 2.0.0 OK queued as" in result.stdout
    assert only_row(db).envelope["rcpt_to"] == ["support@example.com"]


def test_swaks_oversize_gets_552(start_listener: StartListener, swaks: str, db: Database) -> None:
    listener = start_listener(smtp={"max_message_size": 2000})
    result = swaks_send(swaks, listener, "--to", "support@example.com", "--body", "x" * 5000)
    assert "<** 552 5.3.4 Message too big for system" in result.stdout, result.stdout
    assert spool.list_inbound(db) == []


def test_a_bug_while_storing_is_answered_451_never_500(
    start_listener: StartListener, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool, "put_many", raising("a bug, not an outage"))
    for protocol in ("smtp", "lmtp"):
        listener = start_listener(smtp={"protocol": protocol})
        client = (smtplib.LMTP if protocol == "lmtp" else smtplib.SMTP)(listener.host, listener.port)
        with client:
            client.ehlo()
            client.mail(CUSTOMER)
            client.rcpt("support@example.com")
            client.rcpt("billing@example.com")
            replies = [client.data(make_mail())] + ([client.getreply()] if protocol == "lmtp" else [])
            assert client.noop()[0] == 250  # in step: nothing left unread
        assert [code for code, _ in replies] == [451] * len(replies), protocol
        assert all(text.startswith(b"4.3.0") for _, text in replies)
    monkeypatch.undo()
    assert spool.list_inbound(db) == []
