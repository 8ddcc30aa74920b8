"""LMTP (one reply per recipient), STARTTLS with a test certificate, and AUTH."""

from __future__ import annotations

import smtplib
import ssl
import subprocess
from pathlib import Path

import pytest

from maildesk import spool
from maildesk.config import parse_config
from maildesk.db import Database
from maildesk.errors import ConfigError
from maildesk.receive import smtp as smtp_listener
from tests.helpers import make_mail, raising
from tests.integration.conftest import StartListener, TlsFiles

pytestmark = pytest.mark.integration

CUSTOMER = "alice@customer.example"


def test_lmtp_two_recipients_get_two_replies_and_one_row(start_listener: StartListener, db: Database) -> None:
    listener = start_listener(smtp={"protocol": "lmtp"})
    with smtplib.LMTP(listener.host, listener.port) as client:
        assert client.ehlo()[0] == 250  # smtplib sends LHLO
        client.mail(CUSTOMER)
        assert client.rcpt("support@example.com")[0] == 250
        assert client.rcpt("nobody@example.com")[0] == 550
        assert client.rcpt("billing@example.com")[0] == 250
        first = client.data(make_mail())
        second = client.getreply()
        assert client.noop()[0] == 250  # nothing else was left unread
    [row] = spool.list_inbound(db)
    assert first == second == (250, f"2.0.0 OK queued as {row.id}".encode())
    assert row.source == "lmtp"
    assert row.envelope["rcpt_to"] == ["support@example.com", "billing@example.com"]


def test_lmtp_with_swaks(start_listener: StartListener, swaks: str, db: Database) -> None:
    listener = start_listener(smtp={"protocol": "lmtp"})
    result = subprocess.run(
        [swaks, "--server", listener.host, "--port", str(listener.port), "--protocol", "LMTP",
         "--from", CUSTOMER, "--to", "support@example.com,billing+vip@example.com"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("<-  250 2.0.0 OK queued as") == 2
    [row] = spool.list_inbound(db)
    assert row.envelope["rcpt_to"] == ["support@example.com", "billing+vip@example.com"]


def test_lmtp_refuses_helo(start_listener: StartListener) -> None:
    listener = start_listener(smtp={"protocol": "lmtp"})
    with smtplib.SMTP(listener.host, listener.port) as client:
        assert client.helo()[0] == 500


def client_context(tls_files: TlsFiles) -> ssl.SSLContext:
    """A client that checks the server's certificate against the test one."""
    return ssl.create_default_context(cafile=str(tls_files.cert))


def test_starttls_with_smtplib(start_listener: StartListener, tls_files: TlsFiles, db: Database) -> None:
    listener = start_listener(smtp={"tls_cert": str(tls_files.cert), "tls_key": str(tls_files.key)})
    with smtplib.SMTP(listener.host, listener.port) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        assert client.starttls(context=client_context(tls_files))[0] == 220
        assert client.sendmail(CUSTOMER, ["support@example.com"], make_mail()) == {}
    [row] = spool.list_inbound(db)
    assert row.envelope["tls"] is True


def test_starttls_with_swaks(start_listener: StartListener, tls_files: TlsFiles, swaks: str, db: Database) -> None:
    listener = start_listener(smtp={"tls_cert": str(tls_files.cert), "tls_key": str(tls_files.key),
                                    "require_tls": True})
    result = subprocess.run(
        [swaks, "--server", listener.host, "--port", str(listener.port), "--tls",
         "--from", CUSTOMER, "--to", "support@example.com"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "<-  220 Ready to start TLS" in result.stdout
    [row] = spool.list_inbound(db)
    assert row.envelope["tls"] is True


def test_require_tls_refuses_mail_in_clear(start_listener: StartListener, tls_files: TlsFiles) -> None:
    listener = start_listener(smtp={"tls_cert": str(tls_files.cert), "tls_key": str(tls_files.key),
                                    "require_tls": True})
    with smtplib.SMTP(listener.host, listener.port) as client:
        client.ehlo()
        assert client.mail(CUSTOMER)[0] == 530


def test_auth_is_required_when_accounts_are_configured(start_listener: StartListener, tls_files: TlsFiles,
                                                       db: Database, tmp_path: Path) -> None:
    password_file = tmp_path / "scanner.password"
    password_file.write_text("correct horse\n")
    listener = start_listener(smtp={
        "tls_cert": str(tls_files.cert), "tls_key": str(tls_files.key),
        "auth": [{"username": "scanner", "password_file": str(password_file)}],
    })
    with smtplib.SMTP(listener.host, listener.port) as client:
        client.starttls(context=client_context(tls_files))
        client.ehlo()
        assert client.mail(CUSTOMER)[0] == 530
        client.rset()
        with pytest.raises(smtplib.SMTPAuthenticationError) as wrong:
            client.login("scanner", "wrong")
        assert wrong.value.smtp_code == 535
        assert client.login("scanner", "correct horse")[0] == 235
        assert client.sendmail(CUSTOMER, ["support@example.com"], make_mail()) == {}
    [row] = spool.list_inbound(db)
    assert row.envelope["auth_user"] == "scanner"


def test_auth_is_never_offered_in_clear(start_listener: StartListener, tls_files: TlsFiles, tmp_path: Path) -> None:
    password_file = tmp_path / "pw"
    password_file.write_text("secret")
    listener = start_listener(smtp={
        "tls_cert": str(tls_files.cert), "tls_key": str(tls_files.key),
        "auth": [{"username": "scanner", "password_file": str(password_file)}],
    })
    with smtplib.SMTP(listener.host, listener.port) as client:
        client.ehlo()
        assert not client.has_extn("auth")
        assert client.docmd("AUTH", "PLAIN AHNjYW5uZXIAc2VjcmV0")[0] == 538


@pytest.mark.parametrize(
    ("smtp", "message"),
    [
        ({"tls_cert": "/x.pem"}, "smtp: tls_cert and tls_key go together"),
        ({"require_tls": True}, "smtp: require_tls needs tls_cert and tls_key"),
        ({"auth": [{"username": "u", "password_file": "/pw"}]}, "smtp: auth needs tls_cert and tls_key"),
        ({"auth": [{"username": "u"}]}, "smtp.auth.0.password_file: Field required"),
        ({"max_connections": 0}, "smtp.max_connections: Input should be greater than 0"),
    ],
)
def test_bad_smtp_settings_are_named(smtp: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"smtp": smtp})
    assert message in str(caught.value)


def test_unreadable_certificate_is_a_config_error(start_listener: StartListener, tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(ConfigError, match="smtp.tls_cert/tls_key: cannot load"):
        start_listener(smtp={"tls_cert": str(missing), "tls_key": str(missing)})


def test_a_bug_in_an_lmtp_session_closes_it_with_421(
    start_listener: StartListener, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(smtp_listener, "read_data", raising("a bug in reading DATA"))
    listener = start_listener(smtp={"protocol": "lmtp"})
    with smtplib.LMTP(listener.host, listener.port) as client:
        client.ehlo()
        client.mail(CUSTOMER)
        client.rcpt("support@example.com")
        client.rcpt("billing@example.com")
        assert client.docmd("DATA")[0] == 354
        assert client.getreply()[0] == 421  # not one 451 for two waiting recipients: the session ends
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()
    assert spool.list_inbound(db) == []

    smtp = start_listener()  # SMTP owes one reply: 451, and the session goes on
    with smtplib.SMTP(smtp.host, smtp.port) as client:
        client.ehlo()
        client.mail(CUSTOMER)
        client.rcpt("support@example.com")
        assert client.docmd("DATA")[0] == 354
        assert client.getreply()[0] == 451
        assert client.noop()[0] == 250
