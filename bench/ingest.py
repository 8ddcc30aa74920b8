"""Benchmark: `maildesk ingest --maildir` into SQLite versus parsing alone.

Run by hand (`make bench` or `.venv/bin/python bench/ingest.py [N]`), never by
the test suite. Writes a corpus of N messages (default 2000) into a Maildir,
times the parse-only rate in this process, then times a real
`maildesk ingest --maildir` subprocess into a fresh SQLite database, and
checks that every conversation became exactly one ticket.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.corpus import generate  # noqa: E402
from maildesk.mail.parse import parse  # noqa: E402


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    corpus = generate(count)
    megabytes = sum(len(m.raw) for m in corpus) / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        maildir = root / "Maildir"
        for sub in ("new", "cur", "tmp"):
            (maildir / sub).mkdir(parents=True)
        for n, mail in enumerate(corpus):
            (maildir / "new" / f"{n:06d}.eml").write_bytes(mail.raw)

        started = time.perf_counter()
        for mail in corpus:
            parse(mail.raw)
        parse_seconds = time.perf_counter() - started

        runs = {}
        for label, flags in (("ingest --maildir", []), ("ingest --maildir --no-notify", ["--no-notify"])):
            runs[label], tickets = _ingest(root / label.replace(" ", "_"), maildir, flags)
    conversations = len({m.conversation for m in corpus})
    parse_rate = count / parse_seconds
    print(f"corpus: {count} messages, {megabytes:.1f} MB, {conversations} conversations")
    print(f"parse only:                    {parse_rate:8.1f} msg/s  ({parse_seconds:.2f} s)")
    for label, seconds in runs.items():
        rate = count / seconds
        print(f"{label + ':':<30} {rate:8.1f} msg/s  ({seconds:.2f} s, SQLite, incl. start-up), "
              f"{rate / parse_rate:.0%} of parse-only (target >= 40%)")
    print(f"tickets: {tickets} for {conversations} conversations "
          f"({'one per conversation' if tickets == conversations else 'MISMATCH'})")


def _ingest(workdir: Path, maildir: Path, flags: list[str]) -> tuple[float, int]:
    """Time one `maildesk ingest --maildir` into a fresh SQLite database; return (seconds, tickets)."""
    workdir.mkdir()
    config = workdir / "maildesk.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{workdir / "bench.db"}"\n[logging]\nlevel = "warning"\n'
                      f'[[addresses]]\naddress = "support@example.com"\n')
    env = {**os.environ, "MAILDESK_CONFIG": str(config)}
    maildesk = [sys.executable, "-m", "maildesk"]
    subprocess.run([*maildesk, "db", "upgrade"], env=env, check=True, capture_output=True)
    started = time.perf_counter()
    subprocess.run([*maildesk, "ingest", *flags, "--maildir", str(maildir)], env=env, check=True)
    seconds = time.perf_counter() - started
    listed = subprocess.run([*maildesk, "tickets", "list", "--json"], env=env, check=True, capture_output=True)
    return seconds, len(json.loads(listed.stdout))

if __name__ == "__main__":
    main()
