"""Benchmark: `maildesk ingest --maildir` into SQLite versus parsing alone.

Run by hand (`make bench` or `.venv/bin/python bench/ingest.py [N]`), never by
the test suite. Writes a corpus of N messages (default 2000) into a Maildir,
times the parse-only rate in this process, then times a real
`maildesk ingest --maildir` subprocess into a fresh SQLite database (with and
without acknowledgements), each the best of three runs, and checks that every
run put each conversation's messages on one ticket of its own.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.corpus import generate  # noqa: E402
from maildesk.mail.parse import parse  # noqa: E402


RULES = Path(__file__).parent / "rules50.toml"
_DIRECTORY = "".join(f'[[queues]]\nname = "{queue}"\n'
                     for queue in ("support", "billing", "level2", "sales", "security", "accounts")) + "".join(
    f'[[agents]]\naddress = "{name}@desk.example"\nqueues = ["{queue}"]\n'
    for name, queue in (("ann", "support"), ("ben", "level2"), ("cat", "billing"), ("dan", "security"))) + "".join(
    f'[[sla_policies]]\nname = "{policy}"\nfirst_response = "4h"\n' for policy in ['legal'])
REPEAT = 3
"""Every figure is the best of this many runs: the machine's own noise only ever slows a run down."""


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

        parse_seconds = min(_parse_all(corpus) for _ in range(REPEAT))

        empty = root / "Empty"
        for sub in ("new", "cur", "tmp"):
            (empty / sub).mkdir(parents=True)
        start_up = min(_ingest(root / f"empty{n}", empty, [])[0] for n in range(3))
        runs: dict[str, float] = {}
        threadings = []
        for label, flags, directory, rules in (
                ("ingest --maildir", [], False, None),
                ("ingest --maildir --no-notify", ["--no-notify"], False, None),
                # Agents get notifications: the next two compare the rules alone, on the same queues and agents.
                ("ingest --maildir, agents", [], True, None),
                ("ingest --maildir, agents, 50 rules", [], True, RULES)):
            for n in range(REPEAT):
                workdir = root / f"{label.replace(' ', '_').replace(',', '')}{n}"
                seconds, tickets_of = _ingest(workdir, maildir, flags, directory, rules)
                runs[label] = min(seconds, runs.get(label, seconds))
                threadings.append(tickets_of)
    conversations = len({m.conversation for m in corpus})
    split = {m.conversation for tickets_of in threadings for m in corpus
             if len(tickets_of_conversation(corpus, tickets_of)[m.conversation]) != 1}
    tickets = max(len(set(tickets_of.values())) for tickets_of in threadings)
    parse_rate = count / parse_seconds
    print(f"corpus: {count} messages, {megabytes:.1f} MB, {conversations} conversations")
    print(f"parse only:                    {parse_rate:8.1f} msg/s  ({parse_seconds:.2f} s)")
    print(f"start-up of the command:       {start_up:8.2f} s (an empty Maildir; not in the parse-only figure)")
    for label, seconds in runs.items():
        rate, work_rate = count / seconds, count / (seconds - start_up)
        print(f"{label + ':':<30} {work_rate:8.1f} msg/s  ({seconds - start_up:.2f} s, SQLite), "
              f"{work_rate / parse_rate:.0%} of parse-only (target >= 40%); "
              f"{rate:.1f} msg/s, {rate / parse_rate:.0%} with start-up")
    with_rules = (runs["ingest --maildir, agents"] - start_up) / (runs["ingest --maildir, agents, 50 rules"] - start_up)
    print(f"50 rules: the full ingest at {with_rules:.0%} of its rate without rules (target >= 90%)")
    print(f"tickets: {tickets} for {conversations} conversations, "
          + ("each conversation on exactly one ticket" if not split and tickets == conversations
             else f"MISMATCH: {len(split)} conversations split over several tickets"))


def _parse_all(corpus: list) -> float:
    started = time.perf_counter()
    for mail in corpus:
        parse(mail.raw)
    return time.perf_counter() - started


def tickets_of_conversation(corpus: list, tickets_of: dict[str, int]) -> dict[int, set[int]]:
    found: dict[int, set[int]] = {}
    for mail in corpus:
        found.setdefault(mail.conversation, set()).add(tickets_of.get(mail.message_id, -1))
    return found


def _ingest(workdir: Path, maildir: Path, flags: list[str], directory: bool = False, rules: Path | None = None,
            ) -> tuple[float, dict[str, int]]:
    """Time one `maildesk ingest --maildir` into a fresh SQLite database; return (seconds, the ticket of
    each inbound Message-ID). ``directory``: with the queues and agents the rules name; ``rules``: a rules file."""
    workdir.mkdir()
    config = workdir / "maildesk.toml"
    config.write_text((f'rules_file = "{rules}"\n' if rules is not None else "")  # top-level keys before tables
                      + f'[database]\nurl = "sqlite:///{workdir / "bench.db"}"\n[logging]\nlevel = "warning"\n'
                      + f'[[addresses]]\naddress = "support@example.com"\n'
                      + (_DIRECTORY if directory else ""))
    env = {**os.environ, "MAILDESK_CONFIG": str(config)}
    maildesk = [sys.executable, "-m", "maildesk"]
    subprocess.run([*maildesk, "db", "upgrade"], env=env, check=True, capture_output=True)
    started = time.perf_counter()
    subprocess.run([*maildesk, "ingest", *flags, "--maildir", str(maildir)], env=env, check=True)
    seconds = time.perf_counter() - started
    with sqlite3.connect(workdir / "bench.db") as db:
        rows = db.execute("SELECT message_id, ticket_id FROM messages WHERE direction = 'in'").fetchall()
    return seconds, dict(rows)


if __name__ == "__main__":
    main()
