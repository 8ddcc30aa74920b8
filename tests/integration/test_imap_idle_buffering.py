"""IDLE news that arrives in the same packet as the server's "+ idling".

Dovecot does this when mail is delivered just as IDLE begins, but not on
cue; a scripted IMAP peer on a loopback socket sends the two lines in one
write every time, over plain TCP and over TLS.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from maildesk.receive.imap_client import IdleSafeIMAPClient
from tests.integration.conftest import TlsFiles

pytestmark = pytest.mark.integration

GREETING = b"* OK [CAPABILITY IMAP4rev1 IDLE] scripted peer ready\r\n"


def answer(conn: socket.socket) -> None:
    """Plays a server that announces new mail in the very packet that starts IDLE."""
    conn.sendall(GREETING)
    reader = conn.makefile("rb")
    for line in reader:
        tag, _, command = line.decode().rstrip("\r\n").partition(" ")
        verb = command.split(" ")[0].upper()
        if verb == "CAPABILITY":
            conn.sendall(b"* CAPABILITY IMAP4rev1 IDLE\r\n" + f"{tag} OK done\r\n".encode())
        elif verb == "IDLE":
            conn.sendall(b"+ idling\r\n* 2 EXISTS\r\n")
            reader.readline()  # DONE
            conn.sendall(f"{tag} OK IDLE terminated\r\n".encode())
        elif verb == "LOGOUT":
            conn.sendall(b"* BYE bye\r\n" + f"{tag} OK done\r\n".encode())
            return
        else:
            conn.sendall(f"{tag} BAD not scripted\r\n".encode())


@contextmanager
def scripted_peer(wrap: ssl.SSLContext | None = None) -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = server.accept()
        if wrap is not None:
            conn = wrap.wrap_socket(conn, server_side=True)
        with conn:
            answer(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        thread.join(10)
        server.close()


def exists_seen_in_idle(client: IdleSafeIMAPClient) -> list:
    client.idle()
    responses = client.idle_check(timeout=5)  # the news is already here: no waiting needed
    client.idle_done()
    client.logout()
    return responses


def test_exists_sent_with_the_idle_continuation_is_seen() -> None:
    with scripted_peer() as port:
        client = IdleSafeIMAPClient("127.0.0.1", port, ssl=False, timeout=10)
        assert (2, b"EXISTS") in exists_seen_in_idle(client)


def test_exists_sent_with_the_idle_continuation_is_seen_over_tls(tls_files: TlsFiles) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(tls_files.cert, tls_files.key)
    client_context = ssl.create_default_context(cafile=str(tls_files.cert))
    with scripted_peer(server_context) as port:
        client = IdleSafeIMAPClient("127.0.0.1", port, ssl=True, ssl_context=client_context, timeout=10)
        assert (2, b"EXISTS") in exists_seen_in_idle(client)
