"""Storage: migrations up and down on every backend, and they match the models."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from maildesk.config import DatabaseConfig
from maildesk.db import MIGRATIONS_DIR, SQLITE_PAGE_SIZE, Database, open_database
from maildesk.migrations.head import HEAD_REVISION
from maildesk.models import Base


def test_head_revision_constant_names_the_newest_migration() -> None:
    # Start-up trusts HEAD_REVISION instead of loading Alembic: a new
    # migration must update it, or databases would never be upgraded.
    assert HEAD_REVISION == ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def test_current_revision_of_a_fresh_database_is_none(database_url: str) -> None:
    database = Database(DatabaseConfig(url=database_url))
    try:
        assert database.current_revision() is None
        assert database.head_revision() == HEAD_REVISION
    finally:
        database.dispose()


def test_a_database_behind_head_is_upgraded_on_first_use(database_url: str) -> None:
    database = Database(DatabaseConfig(url=database_url))
    try:
        database.upgrade("0001")
        assert database.current_revision() == "0001"
        database.ensure_schema()
        assert database.current_revision() == HEAD_REVISION
        assert "recipient" in {c["name"] for c in inspect(database.engine).get_columns("outbox")}
    finally:
        database.dispose()


def test_auto_migrate_off_leaves_the_schema_alone(database_url: str) -> None:
    database = open_database(DatabaseConfig(url=database_url, auto_migrate=False))
    try:
        assert database.current_revision() is None
    finally:
        database.dispose()


def test_opening_a_current_database_does_not_load_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    open_database(DatabaseConfig(url=url)).dispose()
    script = (
        "import sys\n"
        "from maildesk.config import DatabaseConfig\n"
        "from maildesk.db import open_database\n"
        f"open_database(DatabaseConfig(url={url!r})).dispose()\n"
        "import maildesk.cli\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_fresh_database_is_migrated_on_first_use(database_url: str) -> None:
    database = open_database(DatabaseConfig(url=database_url))
    try:
        assert database.current_revision() == database.head_revision()
        tables = set(inspect(database.engine).get_table_names())
        assert {"inbound", "tickets", "messages", "thread_keys", "participants", "attachments",
                "ticket_events", "outbox"} <= tables
    finally:
        database.dispose()


def test_migrations_go_down_to_nothing_and_up_again(database_url: str) -> None:
    database = Database(DatabaseConfig(url=database_url))
    try:
        database.upgrade()
        database.downgrade("base")
        assert database.current_revision() is None
        assert set(inspect(database.engine).get_table_names()) <= {"alembic_version"}
        database.upgrade()
        assert database.current_revision() == database.head_revision()
    finally:
        database.dispose()


def test_models_and_migrations_agree(database_url: str) -> None:
    database = open_database(DatabaseConfig(url=database_url))
    try:
        with database.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        database.dispose()


def test_sqlite_runs_in_wal_mode(tmp_path) -> None:  # type: ignore[no-untyped-def]
    database = open_database(DatabaseConfig(url=f"sqlite:///{tmp_path / 'x.db'}"))
    try:
        with database.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10000
    finally:
        database.dispose()


def test_sqlite_fsyncs_every_commit_unless_told_otherwise(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'x.db'}"
    for config, expected in ((DatabaseConfig(url=url), 2),  # FULL: an answered 250 survives a power loss
                             (DatabaseConfig(url=url, sqlite_synchronous="normal"), 1)):
        database = open_database(config)
        try:
            with database.engine.connect() as connection:
                assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == expected
        finally:
            database.dispose()


def test_spooled_bytes_survive_the_move_to_their_own_table_and_back(database_url: str) -> None:
    database = Database(DatabaseConfig(url=database_url))
    insert = text("INSERT INTO inbound (sha256, raw, size, source, envelope, notify, received_at, state, attempts) "
                  "VALUES ('abc', :raw, 5, 'cli', '{}', true, CURRENT_TIMESTAMP, 'queued', 0)")
    try:
        database.upgrade("0003")
        with database.engine.begin() as connection:
            connection.execute(insert, {"raw": b"hello"})
        database.upgrade("0004")
        with database.engine.connect() as connection:
            assert connection.execute(text("SELECT inbound_id, raw FROM inbound_raw")).all() == [(1, b"hello")]
        database.downgrade("0003")
        with database.engine.connect() as connection:
            assert connection.execute(text("SELECT raw FROM inbound")).scalars().all() == [b"hello"]
    finally:
        database.dispose()


def test_migrations_go_down_and_up_again_with_tickets_in_the_database(database_url: str, config_data: dict) -> None:
    from maildesk.config import parse_config
    from tests.helpers import Desk, make_mail

    database = open_database(DatabaseConfig(url=database_url))
    try:
        desk = Desk(database, parse_config(config_data))
        first = desk.ingest(make_mail(message_id="<q@c.example>"), notify=True)
        desk.ingest(make_mail(in_reply_to="<q@c.example>"), notify=True)
        database.downgrade("0001")  # every step down with rows that reference each other
        database.upgrade()
        assert desk.ticket(first.ticket_id)["subject"] == "Printer on fire"
        assert len(desk.ticket(first.ticket_id)["messages"]) == 3  # two in, the acknowledgement out
    finally:
        database.dispose()


def test_a_new_sqlite_database_has_large_pages_and_an_old_one_keeps_its_own(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as connection:  # made by an earlier maildesk, with SQLite's default pages
        connection.execute("CREATE TABLE earlier (x)")
    for path, expected in ((tmp_path / "new.db", SQLITE_PAGE_SIZE), (old, 4096)):
        database = Database(DatabaseConfig(url=f"sqlite:///{path}"))
        try:
            with database.engine.connect() as connection:
                assert connection.exec_driver_sql("PRAGMA page_size").scalar() == expected
                assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        finally:
            database.dispose()
