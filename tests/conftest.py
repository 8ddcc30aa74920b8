"""Fixtures shared by every test: a migrated database (SQLite, and PostgreSQL
when MAILDESK_TEST_DATABASE_URL is set), a config pointing at it, and a desk
that spools and processes messages the way the daemon does."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from maildesk.config import Config, parse_config
from maildesk.db import Database, open_database
from tests.helpers import Desk

POSTGRES_URL = os.environ.get("MAILDESK_TEST_DATABASE_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])
ONLY_POSTGRESQL = pytest.mark.parametrize("database_url", ["postgresql"] if POSTGRES_URL else [], indirect=True)
"""For a test of what only PostgreSQL allows (other writers during a transaction); it runs where
MAILDESK_TEST_DATABASE_URL is set, as in CI."""


def reset_postgres(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty database, once per backend under test."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'maildesk.db'}"
    assert POSTGRES_URL is not None
    reset_postgres(POSTGRES_URL)
    return POSTGRES_URL


@pytest.fixture
def config_data(database_url: str, tmp_path: Path) -> dict:
    return {
        "database": {"url": database_url, "busy_timeout_seconds": 2},
        "desk": {"domain": "desk.example.com"},
        "addresses": [
            {"address": "support@example.com", "queue": "support", "display_name": "ACME Support"},
            {"address": "billing@example.com", "queue": "billing", "display_name": "ACME Billing"},
        ],
        "outbound": {"directory": str(tmp_path / "outbox")},
    }


@pytest.fixture
def config(config_data: dict) -> Config:
    return parse_config(config_data)


@pytest.fixture
def db(config: Config) -> Iterator[Database]:
    database = open_database(config.database)
    yield database
    database.dispose()


@pytest.fixture
def desk(db: Database, config: Config) -> Desk:
    return Desk(db, config)
