"""Fixtures for the integration tests: the real SMTP/LMTP listener on a free
loopback port (in a thread with its own asyncio loop), a throw-away TLS
certificate made with ``openssl req``, and the external tools (swaks) that
must be present in CI and are skipped, with a hint, on a developer machine."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from maildesk.config import Config, parse_config
from maildesk.db import Database
from maildesk.receive.smtp import start_server
from tests.integration.dovecot import dovecot, imap_account  # noqa: F401 - IMAP fixtures, a real Dovecot

IN_CI = os.environ.get("CI") == "true"


def need_tool(name: str, package: str) -> str:
    """The tool's path; skip (fail in CI) with how to install it when it is missing."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if path is None:
        message = f"{name} not installed: sudo apt-get install {package}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def wait_until(condition: Callable[[], Any], *, timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RunningListener:
    """The listener running in a background thread; ``accepted`` lists spooled ids."""

    config: Config
    db: Database
    host: str = "127.0.0.1"
    port: int = 0
    accepted: list[int] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _stopping: asyncio.Event | None = None
    _thread: threading.Thread | None = None

    def start(self) -> RunningListener:
        ready: Future[int] = Future()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main(ready)), daemon=True)
        self._thread.start()
        self.port = ready.result(timeout=15)
        return self

    async def _main(self, ready: Future[int]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            listener = await start_server(self.config, self.db, on_accepted=self.accepted.append)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            ready.set_exception(exc)
            return
        ready.set_result(listener.port)
        await self._stopping.wait()
        await listener.stop()

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(timeout=15)
            assert not self._thread.is_alive(), "listener thread did not stop"


StartListener = Callable[..., RunningListener]


@pytest.fixture
def start_listener(config_data: dict, db: Database) -> Iterator[StartListener]:
    """Start the listener with config sections overridden: ``start_listener(smtp={...}, desk={...})``."""
    running: list[RunningListener] = []

    def start(**sections: dict[str, Any]) -> RunningListener:
        data = {**config_data}
        for name, values in sections.items():
            data[name] = {**data.get(name, {}), **values}
        data["smtp"] = {"host": "127.0.0.1", **data.get("smtp", {}), "port": 0}
        listener = RunningListener(parse_config(data), db)
        running.append(listener)
        return listener.start()

    try:
        yield start
    finally:
        for listener in running:
            listener.stop()


@pytest.fixture
def listener(start_listener: StartListener) -> RunningListener:
    """The listener with the test config: SMTP, no TLS, no AUTH."""
    return start_listener()


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A self-signed certificate for 127.0.0.1/localhost, made now, valid for a day."""
    openssl = need_tool("openssl", "openssl")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    return TlsFiles(cert, key)


@pytest.fixture
def swaks() -> str:
    return need_tool("swaks", "swaks libnet-ssleay-perl")


class TcpProxy:
    """A loopback TCP forwarder that can be cut (listener and every connection) and restored
    on the same port: a database server going away and coming back, as the client sees it.

    With ``hold_on``, client data containing those bytes is never forwarded, nor
    anything after it, and ``held`` is set: the client stands frozen just before
    that command reaches the server (where a test can kill it).
    """

    def __init__(self, target: tuple[str, int], *, hold_on: bytes | None = None) -> None:
        self.target = target
        self.hold_on = hold_on
        self.held = threading.Event()
        self.port = 0
        self._sockets: list[socket.socket] = []
        self._server: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> TcpProxy:
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.settimeout(0.05)
        self.port = self._server.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, args=(self._server,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            assert self._thread is not None
            self._thread.join(timeout=10)
            server.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._sockets.clear()

    def _accept(self, server: socket.socket) -> None:
        while self._server is server:
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            client.settimeout(None)
            upstream = socket.create_connection(self.target)
            self._sockets += [client, upstream]
            for source, sink, hold_on in ((client, upstream, self.hold_on), (upstream, client, None)):
                threading.Thread(target=self._pipe, args=(source, sink, hold_on), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, hold_on: bytes | None) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if hold_on is not None and (self.held.is_set() or hold_on in data):
                    self.held.set()
                    continue
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
