"""List commands never cut silently: 500 stored messages, a default page that
says more exist (stderr and ``next``), ``--before-id`` paging and ``--all``."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from maildesk import spool
from maildesk.cli import main
from maildesk.cli.paging import DEFAULT_LIMIT
from maildesk.db import Database
from tests.helpers import make_mail

STORED = 500


def listing(config_path: Path, *args: str) -> tuple[dict, str]:
    result = CliRunner().invoke(main, ["-c", str(config_path), "inbound", "list", "--json", *args],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result.stderr


def stored(db: Database, tmp_path: Path, database_url: str) -> Path:
    spool.put_many(db, [spool.Item(make_mail(message_id=f"<page-{n}@x.example>"), "test") for n in range(STORED)])
    path = tmp_path / "maildesk.toml"
    path.write_text(f"[database]\nurl = {json.dumps(database_url)}\n")
    return path


def test_the_default_page_says_more_exist_and_all_returns_every_one(
    db: Database, tmp_path: Path, database_url: str
) -> None:
    config_path = stored(db, tmp_path, database_url)

    first, said = listing(config_path)
    assert len(first["items"]) == DEFAULT_LIMIT
    assert first["next"] == first["items"][-1]["id"]
    assert f"more exist: --before-id {first['next']}" in said

    everything, said = listing(config_path, "--all")
    assert len(everything["items"]) == STORED and everything["next"] is None and said == ""
    assert len({row["id"] for row in everything["items"]}) == STORED


def test_paging_with_before_id_visits_every_row_once(db: Database, tmp_path: Path, database_url: str) -> None:
    config_path = stored(db, tmp_path, database_url)
    seen: list[int] = []
    page, _ = listing(config_path, "--limit", "120")
    while True:
        seen += [row["id"] for row in page["items"]]
        if page["next"] is None:
            break
        page, _ = listing(config_path, "--limit", "120", "--before-id", str(page["next"]))
    assert len(seen) == STORED and seen == sorted(seen, reverse=True)


def test_a_bad_limit_is_a_one_line_error(db: Database, tmp_path: Path, database_url: str) -> None:
    config_path = tmp_path / "maildesk.toml"
    config_path.write_text(f"[database]\nurl = {json.dumps(database_url)}\n")
    result = CliRunner().invoke(main, ["-c", str(config_path), "tickets", "list", "--limit", "0"])
    assert result.exit_code == 2 and "--limit" in result.stderr


def test_the_table_says_so_too(db: Database, tmp_path: Path, database_url: str) -> None:
    config_path = stored(db, tmp_path, database_url)
    result = CliRunner().invoke(main, ["-c", str(config_path), "inbound", "list", "--limit", "3"])
    assert result.exit_code == 0
    assert len(result.stdout.strip().splitlines()) == 1 + 3  # header and three rows
    assert "3 shown, more exist: --before-id" in result.stderr
