"""What ``maildesk status`` and ``/healthz`` read from the database: queue depths,
failures, open tickets per queue, what needs attention first; and a database
that cannot be reached is an answer, not a crash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from maildesk import health
from maildesk.cli import main
from maildesk.config import DatabaseConfig
from maildesk.db import Database
from maildesk.desk import tickets
from tests.helpers import Desk, make_mail, raising


def test_the_snapshot_counts_queues_failures_and_open_tickets(desk: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    desk.ingest(make_mail(subject="Works"), notify=True)
    with monkeypatch.context() as patch:
        patch.setattr(tickets, "add_message", raising("bug in the desk"))
        desk.ingest(make_mail(subject="Breaks"))

    data = health.snapshot(desk.db, desk.config)

    assert data["database"] == {"reachable": True, "error": None}
    assert data["spool"]["queued"] == 0 and data["spool"]["failed"] == 1
    assert data["outbox"]["queued"] == 1 and data["outbox"]["oldest_queued_age_seconds"] is not None
    assert data["tickets_open"] == {"support": {"new": 1, "open": 0, "pending": 0}}
    assert data["attention"][0].startswith("1 received message(s) failed processing")
    assert health.status_line(data) == "0 queued, 1 failed, outbox 1"


def test_an_unreachable_database_is_reported(tmp_path: Path) -> None:
    db = Database(DatabaseConfig(url="postgresql+psycopg://postgres@127.0.0.1:1/nowhere"))
    try:
        data = health.snapshot(db, None)  # type: ignore[arg-type] - never read: the database fails first
    finally:
        db.dispose()
    assert data["database"]["reachable"] is False and data["database"]["error"]
    assert data["spool"] is None and len(data["attention"]) == 1
    assert health.status_line(data).startswith("database unreachable: ")


def test_status_command(desk: Desk, tmp_path: Path, database_url: str) -> None:
    desk.ingest(make_mail(subject="Waiting for an agent"))
    config = tmp_path / "maildesk.toml"
    config.write_text(f'[database]\nurl = {json.dumps(database_url)}\n[[addresses]]\naddress = "support@example.com"\n')
    shown = CliRunner().invoke(main, ["-c", str(config), "status"])
    assert shown.exit_code == 0, shown.output
    assert "spool         0 queued, 0 failed" in shown.stdout
    assert "open tickets  support: 1 new, 0 open, 0 pending" in shown.stdout
    assert "nothing needs attention" in shown.stdout
    as_json = CliRunner().invoke(main, ["-c", str(config), "status", "--json"])
    assert json.loads(as_json.stdout)["tickets_open"] == {"support": {"new": 1, "open": 0, "pending": 0}}
