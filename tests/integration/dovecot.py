"""A real Dovecot IMAP server for tests, started from a config in a temp dir.

``DovecotServer`` writes a minimal dovecot.conf (plaintext auth on loopback,
Maildir storage, a passwd-file of users), runs ``dovecot -F`` in the
foreground as our own child process and stops it again; it can be stopped
and started again on the same port to simulate an outage. Each test gets a
fresh user (own Maildir) from ``new_account()``, so one shared server serves
the whole session. Without Dovecot installed the tests skip (fail under
``CI=true``).
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from imapclient import IMAPClient

INSTALL_HINT = "Dovecot is not installed: sudo apt-get install dovecot-imapd (the service need not run)"

_CONFIG = """\
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
protocols = imap
listen = 127.0.0.1
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login xoauth2
auth_failure_delay = 0
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = {uid}
mail_location = maildir:~/Maildir
# IDLE learns of new mail through inotify; when the machine runs out of inotify
# instances (many Dovecots in one test run) it falls back to polling every 30 s.
mailbox_idle_check_interval = 1 secs
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {base}/users/%u
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {base}/users/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
  }}
}}
service anvil {{
  chroot =
  # no growing delays after the wrong-password tests
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service stats {{
  chroot =
}}
"""


def dovecot_binary() -> str:
    """The dovecot executable, or skip (fail under CI) with how to install it."""
    found = shutil.which("dovecot") or next(
        (p for p in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot") if os.access(p, os.X_OK)), None
    )
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(INSTALL_HINT + " — required under CI=true", pytrace=False)
        pytest.skip(INSTALL_HINT)
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Account:
    """One IMAP user on the test server."""

    host: str
    port: int
    username: str
    password: str

    def client(self) -> IMAPClient:
        """A logged-in IMAP client: "another mail client" acting on the box."""
        client = IMAPClient(self.host, self.port, ssl=False, timeout=10)
        client.login(self.username, self.password)
        return client

    def append(self, raw: bytes, folder: str = "INBOX", flags: tuple[bytes, ...] = ()) -> None:
        with self.client() as client:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            client.append(folder, raw, flags=flags)

    def uids(self, folder: str = "INBOX") -> list[int]:
        with self.client() as client:
            if not client.folder_exists(folder):
                return []
            client.select_folder(folder, readonly=True)
            return sorted(client.search(["NOT", "DELETED"]))

    def flags(self, folder: str = "INBOX") -> dict[int, set[bytes]]:
        with self.client() as client:
            client.select_folder(folder, readonly=True)
            uids = client.search(["ALL"])
            return {uid: set(data[b"FLAGS"]) for uid, data in client.fetch(uids, ["FLAGS"]).items()}


class DovecotServer:
    """A private Dovecot instance on a loopback port; start(), stop(), new_account()."""

    def __init__(self, port: int | None = None, *, tls: tuple[Path, Path] | None = None) -> None:
        """``tls``: (certificate, key) PEM files; with them STARTTLS is offered and
        ``imaps_port`` speaks implicit TLS."""
        self.binary = dovecot_binary()
        # Not under pytest's tmp_path: Dovecot's users need +x on every parent.
        base = Path(tempfile.mkdtemp(prefix="maildesk-dovecot-"))
        self.base = base
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self._process: subprocess.Popen[bytes] | None = None
        self._users = itertools.count(1)
        account = pwd.getpwnam("dovecot")
        self._uid, self._gid = account.pw_uid, account.pw_gid
        base.chmod(0o755)
        for sub in ("run", "state", "homes", "users"):
            (base / sub).mkdir(exist_ok=True)
            (base / sub).chmod(0o755)
        self.imaps_port = free_port() if tls else 0
        ssl = f"ssl = yes\nssl_cert = <{tls[0]}\nssl_key = <{tls[1]}" if tls else "ssl = no"
        (base / "dovecot.conf").write_text(
            _CONFIG.format(base=base, uid=self._uid, port=self.port, imaps_port=self.imaps_port, ssl=ssl)
        )

    def start(self, timeout: float = 10.0) -> None:
        assert self._process is None, "already running"
        with open(self.base / "stdout.log", "ab") as out:
            self._process = subprocess.Popen(
                [self.binary, "-F", "-c", str(self.base / "dovecot.conf")],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends the imap processes too
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as sock:
                    if sock.recv(100).startswith(b"* OK"):
                        return
            except OSError:
                pass
            if self._process.poll() is not None or time.monotonic() > deadline:
                log = self.log()
                self.stop()
                raise RuntimeError(f"dovecot did not start on port {self.port}:\n{log}")
            time.sleep(0.05)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        # Like a server restart: every Dovecot process gets SIGTERM, so the imap
        # processes say BYE to their clients now rather than outliving the master.
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        try:
            os.killpg(process.pid, signal.SIGKILL)  # anything left behind
        except ProcessLookupError:
            pass

    def remove(self) -> None:
        """Stop the server and delete its directory."""
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self._process is not None

    def log(self) -> str:
        parts = []
        for name in ("dovecot.log", "stdout.log"):
            path = self.base / name
            if path.exists():
                parts.append(path.read_text(errors="replace")[-4000:])
        return "\n".join(parts)

    def new_account(self, password: str = "secret") -> Account:
        """A fresh user with an empty Maildir."""
        name = f"user{next(self._users)}"
        home = self.base / "homes" / name
        home.mkdir()
        os.chown(home, self._uid, self._gid)
        # One passwd-file per user: a new file is read on first use, no cache to beat.
        entry = f"{name}:{{PLAIN}}{password}:{self._uid}:{self._gid}::{home}\n"
        (self.base / "users" / name).write_text(entry)
        return Account(self.host, self.port, name, password)

    def maildir(self, account: Account) -> Path:
        return self.base / "homes" / account.username / "Maildir"


@pytest.fixture(scope="session")
def dovecot() -> Iterator[DovecotServer]:
    """One Dovecot for the whole test session; tests take their own account."""
    server = DovecotServer()
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture
def imap_account(dovecot: DovecotServer) -> Account:
    """A fresh IMAP user with an empty mailbox on the shared Dovecot."""
    return dovecot.new_account()
