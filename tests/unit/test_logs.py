"""Logs: one JSON object per line when not on a terminal, bound to the message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import structlog.testing

from maildesk.desk import tickets
from tests.helpers import Desk, make_mail, raising


def test_ingest_logs_json_lines_bound_to_inbound_message_and_ticket(tmp_path: Path) -> None:
    config = tmp_path / "maildesk.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "x.db"}"\n[[addresses]]\naddress = "support@example.com"\n')
    result = subprocess.run(
        [sys.executable, "-m", "maildesk", "ingest", "--no-notify"],
        input=make_mail(message_id="<logged@customer.example>"),
        capture_output=True,
        env={**os.environ, "MAILDESK_CONFIG": str(config)},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.decode().splitlines()]
    applied = [line for line in lines if line["msg"] == "message applied"]
    assert len(applied) == 1
    assert applied[0]["inbound_id"] == 1
    assert applied[0]["message_id"] == "<logged@customer.example>"
    assert applied[0]["ticket_id"] == 1
    assert applied[0]["level"] == "info" and applied[0]["timestamp"].endswith("Z")


def test_a_failing_message_is_logged_with_its_message_id(desk: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tickets, "add_message", raising("bug in the desk"))
    with structlog.testing.capture_logs() as logs:
        outcome = desk.ingest(make_mail(message_id="<fails@customer.example>"))
    assert outcome.state == "failed"
    [failure] = [line for line in logs if line["event"] == "processing failed"]
    assert failure["inbound_id"] == outcome.inbound_id
    assert failure["message_id"] == "<fails@customer.example>"
