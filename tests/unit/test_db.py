"""Storage: migrations up and down on every backend, and they match the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from maildesk.config import DatabaseConfig
from maildesk.db import Database, open_database
from maildesk.models import Base


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
