"""The sd_notify protocol as systemd reads it: one datagram of KEY=VALUE lines
to NOTIFY_SOCKET (a path, or an abstract socket written with '@'), nothing at
all without it, and the watchdog interval taken from WATCHDOG_USEC/WATCHDOG_PID."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

from maildesk.systemd import Notifier, socket_address, watchdog_interval


def receiver(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(5)
    return sock


def test_messages_reach_an_abstract_socket() -> None:
    name = f"maildesk-unit-{uuid.uuid4().hex}"
    with receiver("\0" + name) as sock:
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": "@" + name})
        assert notifier.enabled
        notifier.ready("3 queued, 0 failed, outbox 1")
        notifier.watchdog()
        notifier.stopping()
        assert sock.recv(4096) == b"READY=1\nSTATUS=3 queued, 0 failed, outbox 1"
        assert sock.recv(4096) == b"WATCHDOG=1"
        assert sock.recv(4096) == b"STOPPING=1"
        notifier.close()


def test_messages_reach_a_socket_file(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with receiver(str(path)) as sock:
        notifier = Notifier(str(path))
        notifier.reloading()
        reloading, monotonic = sock.recv(4096).decode().split("\n")
        assert reloading == "RELOADING=1" and monotonic.startswith("MONOTONIC_USEC=")
        notifier.close()


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier.from_environment({})
    assert not notifier.enabled and notifier.send("READY=1") is False


def test_a_socket_that_is_gone_is_logged_not_raised(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "missing"))
    assert notifier.send("READY=1") is False
    notifier.close()


def test_abstract_addresses() -> None:
    assert socket_address("@name") == "\0name" and socket_address("/run/x") == "/run/x"


@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}, 0.5),
        ({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(environ: dict[str, str], interval: float | None) -> None:
    assert watchdog_interval(environ) == interval
