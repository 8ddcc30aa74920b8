"""Logging in to Dovecot with each kind of credential, and clear errors when one fails.

TLS (implicit and STARTTLS) runs against a Dovecot with a throw-away
certificate, trusted through ``tls_ca_file``. Dovecot checks an XOAUTH2 token against its passdb like a password, so the
test user's password doubles as the "access token" a token command prints.
"""

from __future__ import annotations

import shlex
import ssl
import sys
from pathlib import Path
from typing import Any

import pytest

from maildesk.db import Database
from maildesk.receive.imap import MailboxPoller
from maildesk.receive.imap_auth import ImapLoginError
from tests.helpers import make_mail
from tests.integration.dovecot import Account, DovecotServer
from tests.integration.test_imap import imap_config

pytestmark = pytest.mark.integration


def echo_command(text: str) -> str:
    return shlex.join([sys.executable, "-c", f"print({text!r})"])


@pytest.mark.parametrize("kind", ["password_file", "password_command", "oauth2_token_command"])
def test_each_kind_of_credential_logs_in(
    kind: str, imap_account: Account, config_data: dict, db: Database, tmp_path: Path
) -> None:
    secret_file = tmp_path / "imap.password"
    secret_file.write_text(imap_account.password + "\n")
    value = str(secret_file) if kind == "password_file" else echo_command(imap_account.password)
    imap_account.append(make_mail())
    config = imap_config(config_data, imap_account, password=None, **{kind: value})
    assert MailboxPoller(config.imap[0], db).run_once().fetched == 1


@pytest.mark.parametrize(
    ("credential", "message"),
    [
        ({"password": "wrong-secret"}, "imap support: login as user"),
        ({"password_file": "/nonexistent/imap.password"}, "imap support: cannot read password_file"),
        ({"password_command": "false"}, "imap support: password_command exited with 1"),
        ({"oauth2_token_command": "true"}, "imap support: oauth2_token_command printed nothing"),
        ({"oauth2_token_command": "/nonexistent/get-token"}, "imap support: oauth2_token_command could not run"),
    ],
)
def test_a_credential_problem_is_one_clear_line(
    credential: dict, message: str, imap_account: Account, config_data: dict, db: Database
) -> None:
    config = imap_config(config_data, imap_account, **{"password": None, **credential})
    with pytest.raises(ImapLoginError) as caught:
        MailboxPoller(config.imap[0], db).run_once()
    text = str(caught.value)
    assert text.startswith(message) and "\n" not in text
    assert "wrong-secret" not in text


@pytest.mark.parametrize("tls", ["ssl", "starttls"])
def test_tls_with_a_private_ca(tls: str, tls_files: Any, config_data: dict, db: Database) -> None:
    server = DovecotServer(tls=(tls_files.cert, tls_files.key))
    try:
        server.start()
        account = server.new_account()
        account.append(make_mail())
        port = server.imaps_port if tls == "ssl" else server.port
        trusting = imap_config(config_data, account, tls=tls, port=port, tls_ca_file=str(tls_files.cert))
        assert MailboxPoller(trusting.imap[0], db).run_once().fetched == 1

        # Without the CA the self-signed certificate is refused.
        untrusting = imap_config(config_data, account, tls=tls, port=port)
        with pytest.raises(ssl.SSLCertVerificationError):
            MailboxPoller(untrusting.imap[0], db).run_once()
    finally:
        server.remove()
