"""Benchmark: messages per second the SMTP listener accepts, against the durable floor.

Run by hand (``.venv/bin/python bench/smtp.py [--messages N]``), never by the
test suite. Starts a real ``maildesk serve`` (SQLite in a temp directory, the
processor running, as in production) and, for comparison, a bare aiosmtpd
server whose handler only writes each message to a file and fsyncs it (the
least any durable receiver must do). Each is driven at 1, 10 and 50
concurrent sessions by Postfix's ``smtp-source`` when installed (package
postfix), else by an smtplib load generator in threads; every session reuses
its connection. Prints one table (median of --repeat runs; maildesk and floor
alternate, so a slow spell of the disk hits both); checks that every message
was accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

SMTP_SOURCE = shutil.which("smtp-source") or shutil.which("smtp-source", path="/usr/sbin")
SENDER, RECIPIENT = "load@client.example", "support@example.com"


# -- the floor: an aiosmtpd handler that writes a file and fsyncs it -----------------


def run_floor_server(port: int, directory: Path) -> None:
    from aiosmtpd.smtp import SMTP

    counter = itertools.count()

    def store(data: bytes) -> None:
        fd = os.open(directory / f"{next(counter):08d}.eml", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    class Handler:
        async def handle_DATA(self, server: SMTP, session: object, envelope: object) -> str:
            await asyncio.to_thread(store, envelope.original_content)  # type: ignore[attr-defined]
            return "250 OK"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: SMTP(Handler(), hostname="floor"), "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# -- servers under test --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running(command: list[str], port: int, log: Path, env: dict[str, str] | None = None) -> Iterator[None]:
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"server did not start, see {log}") from None
                time.sleep(0.05)
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)


# -- load ----------------------------------------------------------------------------


def message(n: int, size: int) -> bytes:
    head = (f"From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: load {n}\r\n"
            f"Message-ID: <load-{n}-{time.time_ns()}@client.example>\r\n\r\n")
    line = ("x" * 76 + "\r\n").encode()
    return head.encode() + line * max(1, size // len(line))


def drive(port: int, sessions: int, count: int, size: int) -> float:
    """Send ``count`` messages over ``sessions`` concurrent connections; return the seconds taken."""
    started = time.perf_counter()
    if SMTP_SOURCE:
        subprocess.run([SMTP_SOURCE, "-s", str(sessions), "-m", str(count), "-d", "-l", str(size),
                        "-f", SENDER, "-t", RECIPIENT, f"127.0.0.1:{port}"], check=True)
    else:
        def session(index: int) -> None:
            with smtplib.SMTP("127.0.0.1", port) as client:
                for n in range(index, count, sessions):
                    client.sendmail(SENDER, [RECIPIENT], message(n, size))

        with ThreadPoolExecutor(sessions) as pool:
            list(pool.map(session, range(sessions)))
    return time.perf_counter() - started


def measure(port: int, levels: list[int], count: int, size: int, accepted: Callable[[], int]) -> list[float]:
    rates = []
    for sessions in levels:
        before = accepted()
        seconds = drive(port, sessions, count, size)
        got = accepted() - before
        if got != count:
            raise SystemExit(f"{got} of {count} messages accepted at {sessions} sessions")
        rates.append(count / seconds)
    return rates


def spooled(database: Path) -> int:
    import sqlite3

    with sqlite3.connect(database) as connection:
        return int(connection.execute("SELECT count(*) FROM inbound").fetchone()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000, help="messages per run (default 1000)")
    parser.add_argument("--size", type=int, default=2048, help="message body size in bytes (default 2048)")
    parser.add_argument("--sessions", default="1,10,50", help="concurrent sessions (default 1,10,50)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure, median shown (default 3)")
    parser.add_argument("--accept-only", action="store_true",
                        help="run maildesk with [processor] enabled = false (the listener alone)")
    parser.add_argument("--sqlite-synchronous", choices=["full", "normal"], default="full",
                        help="database.sqlite_synchronous for maildesk (default full, as shipped)")
    parser.add_argument("--floor-server", nargs=2, metavar=("PORT", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_server:
        run_floor_server(int(args.floor_server[0]), Path(args.floor_server[1]))
        return
    levels = [int(s) for s in args.sessions.split(",")]

    maildesk_runs: list[list[float]] = []
    floor_runs: list[list[float]] = []
    for _ in range(args.repeat):  # alternating blocks, so a slow spell of the disk hits both
        with tempfile.TemporaryDirectory() as tmp:
            maildesk_runs.append(run_maildesk(Path(tmp), levels, args))
            floor_runs.append(run_floor(Path(tmp), levels, args))
    maildesk, floor = median_per_level(maildesk_runs), median_per_level(floor_runs)

    load = "smtp-source" if SMTP_SOURCE else "smtplib threads"
    mode = "accept only ([processor] enabled = false)" if args.accept_only else "processor running"
    print(f"\n{args.messages} messages of ~{args.size} bytes per run, load from {load}, {os.cpu_count()} CPUs,"
          f" median of {args.repeat} runs")
    print(f"{'sessions':>8}  {'maildesk msg/s':>14}  {'floor msg/s':>11}  {'maildesk/floor':>14}")
    for sessions, ours, base in zip(levels, maildesk, floor):
        print(f"{sessions:>8}  {ours:>14.0f}  {base:>11.0f}  {ours / base:>13.0%}")
    print(f"maildesk: `serve`, SQLite (WAL, synchronous={args.sqlite_synchronous}, group commit), {mode};"
          " floor: aiosmtpd + write file + fsync")


def run_maildesk(root: Path, levels: list[int], args: argparse.Namespace) -> list[float]:
    database, port = root / "bench.db", free_port()
    config = root / "maildesk.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{database}"\nsqlite_synchronous = "{args.sqlite_synchronous}"\n[smtp]\nport = {port}\n'
        f'max_connections = 200\n[outbound]\ndirectory = "{root / "outbox"}"\n'
        f'[processor]\nenabled = {"false" if args.accept_only else "true"}\n'
        f'[logging]\nlevel = "warning"\n[[addresses]]\naddress = "{RECIPIENT}"\n')
    with running([sys.executable, "-m", "maildesk", "-c", str(config), "serve"], port, root / "serve.log"):
        return measure(port, levels, args.messages, args.size, lambda: spooled(database))


def run_floor(root: Path, levels: list[int], args: argparse.Namespace) -> list[float]:
    files, port = root / "floor", free_port()
    files.mkdir()
    with running([sys.executable, __file__, "--floor-server", str(port), str(files)], port, root / "floor.log"):
        return measure(port, levels, args.messages, args.size, lambda: len(os.listdir(files)))


def median_per_level(runs: list[list[float]]) -> list[float]:
    return [statistics.median(rates) for rates in zip(*runs)]

if __name__ == "__main__":
    main()
