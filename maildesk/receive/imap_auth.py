"""Connecting and logging in to one configured IMAP mailbox.

TLS as configured (implicit, STARTTLS or none), then one of: a password
given in the config, read from a file, printed by a command, or an OAuth2
access token printed by a command (XOAUTH2, for Microsoft 365 and Gmail —
maildesk keeps no refresh flow of its own). Commands run on every connect,
so a rotating token is always fresh. Any problem is an ``ImapLoginError``
whose message names the mailbox and never contains the secret.
"""

from __future__ import annotations

import ssl

from imapclient import IMAPClient

from maildesk import credentials
from maildesk.config import ImapConfig
from maildesk.receive.imap_client import IdleSafeIMAPClient

COMMAND_TIMEOUT_SECONDS = 30


class ImapLoginError(Exception):
    """The credentials could not be obtained or were refused."""


def connect(box: ImapConfig) -> IMAPClient:
    """An authenticated client for ``box`` (the caller logs out / closes it)."""
    port = box.port or (993 if box.tls == "ssl" else 143)
    try:
        context = ssl.create_default_context(cafile=box.tls_ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ImapLoginError(f"imap {box.name}: cannot use tls_ca_file {box.tls_ca_file}: {exc}") from None
    client = IdleSafeIMAPClient(
        box.host, port, ssl=box.tls == "ssl", ssl_context=context, timeout=box.timeout_seconds
    )
    try:
        if box.tls == "starttls":
            client.starttls(context)
        login(client, box)
    except BaseException:
        try:
            client.shutdown()
        except OSError:
            pass  # already closed by the failed handshake; the first error is the one to report
        raise
    return client


def login(client: IMAPClient, box: ImapConfig) -> None:
    try:
        if box.oauth2_token_command is not None:
            token = _run(box, "oauth2_token_command", box.oauth2_token_command)
            client.oauth2_login(box.username, token)
        else:
            client.login(box.username, password(box))
    except IMAPClient.Error as exc:
        raise ImapLoginError(f"imap {box.name}: login as {box.username} refused: {exc}") from None


def password(box: ImapConfig) -> str:
    if box.password is not None:
        return box.password.get_secret_value()
    if box.password_file is not None:
        try:
            lines = box.password_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ImapLoginError(f"imap {box.name}: cannot read password_file: {exc.strerror}") from None
        if not lines or not lines[0]:
            raise ImapLoginError(f"imap {box.name}: password_file {box.password_file} is empty")
        return lines[0]
    assert box.password_command is not None
    return _run(box, "password_command", box.password_command)


def _run(box: ImapConfig, key: str, command: str) -> str:
    try:
        return credentials.from_command(command, timeout=COMMAND_TIMEOUT_SECONDS)
    except credentials.CredentialError as exc:
        raise ImapLoginError(f"imap {box.name}: {key} {exc}") from None
