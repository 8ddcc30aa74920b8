"""The database: engine, sessions, SQLite pragmas and the migrations runner.

SQLite runs in WAL mode with a busy timeout, and every transaction starts
with ``BEGIN IMMEDIATE`` so two writers queue for the lock instead of failing
half-way. ``synchronous=FULL`` (``database.sqlite_synchronous``, the default)
fsyncs the WAL on every commit, so a commit survives a power loss, not just a
crash. PostgreSQL needs none of that. The schema is owned by the Alembic
migrations shipped in ``maildesk/migrations``; a fresh database is upgraded
automatically on first use unless ``database.auto_migrate`` is off.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from maildesk.config import DatabaseConfig
from maildesk.errors import TemporaryFailure
from maildesk.migrations.head import HEAD_REVISION

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

SQLITE_PAGE_SIZE = 16384

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_READ_ONLY = "maildesk_read_only"
VERSION_TABLE = "alembic_version"


# What passes: a lock, a lost connection, a deadlock, a full disk or memory, a shutdown.
_SQLITE_TEMPORARY = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_FULL", "SQLITE_CANTOPEN",
                     "SQLITE_PROTOCOL", "SQLITE_NOMEM", "SQLITE_SCHEMA", "SQLITE_INTERRUPT")
_POSTGRESQL_TEMPORARY_CLASSES = ("08", "40", "53", "57", "58")
_POSTGRESQL_LOCK_NOT_AVAILABLE = "55P03"


def worth_retrying(exc: OperationalError) -> bool:
    """Whether the same work may succeed later: the database was busy, locked, unreachable or short
    of resources (and psycopg's own errors, which carry no SQLSTATE: no connection). Any other error
    (SQLite's "too many SQL variables", PostgreSQL's "program limit exceeded"...) the same data hits
    again, so a message that causes it must fail, not wait in the queue forever."""
    if exc.connection_invalidated:
        return True
    error_name = getattr(exc.orig, "sqlite_errorname", None)
    if error_name is not None:
        return error_name.startswith(_SQLITE_TEMPORARY)
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if not sqlstate:  # psycopg's own: the connection could not be made or was lost
        return True
    return sqlstate.startswith(_POSTGRESQL_TEMPORARY_CLASSES) or sqlstate == _POSTGRESQL_LOCK_NOT_AVAILABLE


class Database:
    """One engine and its session factory; the only door to the database."""

    def __init__(self, config: DatabaseConfig) -> None:
        self.config = config
        self.url = make_url(config.url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.engine = self._create_engine()
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def _create_engine(self) -> Engine:
        if not self.is_sqlite:
            return create_engine(self.url, pool_pre_ping=True)
        database = self.url.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            self.url,
            connect_args={"timeout": self.config.busy_timeout_seconds, "isolation_level": None},
        )
        busy_ms = int(self.config.busy_timeout_seconds * 1000)
        synchronous = self.config.sqlite_synchronous.upper()

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            # A new database's page size (ignored once it has tables): mail is mostly
            # large blobs, which 16 KiB pages write in a third less time than 4 KiB ones.
            cursor.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(connection: Any) -> None:
            # Writers take the write lock at BEGIN (a read upgraded to a write can deadlock);
            # readers take none: in WAL mode they never wait for a writer.
            read_only = connection.get_execution_options().get(_READ_ONLY, False)
            connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error.

        Database trouble that is worth retrying (locked, unreachable) comes
        out as TemporaryFailure, so callers answer 451 / exit 75.
        """
        try:
            with self._sessions() as session, session.begin():
                yield session
        except OperationalError as exc:
            if not worth_retrying(exc):
                raise
            raise TemporaryFailure(f"database unavailable: {_first_line(exc)}") from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise TemporaryFailure(f"database connection lost: {_first_line(exc)}") from exc
            raise

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read-only transaction; on SQLite it never waits for (nor blocks) a writer."""
        try:
            with self.engine.connect() as connection:
                connection.execution_options(**{_READ_ONLY: True})
                with connection.begin():
                    yield connection
        except OperationalError as exc:
            raise TemporaryFailure(f"database unavailable: {_first_line(exc)}") from exc

    # migrations -----------------------------------------------------------
    # Alembic is imported only where it runs migrations or reads the scripts:
    # it costs a command's start-up more than everything else maildesk loads.

    def alembic_config(self) -> AlembicConfig:
        from alembic.config import Config as AlembicConfig

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.attributes["engine"] = self.engine
        return cfg

    def current_revision(self) -> str | None:
        """The revision the database is stamped with; None for a fresh one."""
        revisions = self._stamped_revisions()
        if len(revisions) > 1:
            raise RuntimeError(f"{VERSION_TABLE} holds several revisions: {', '.join(revisions)}")
        return revisions[0] if revisions else None

    def head_revision(self) -> str | None:
        """The newest revision among the migration scripts, as Alembic reads them."""
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(self.alembic_config()).get_current_head()

    def upgrade(self, revision: str = "head") -> None:
        from alembic import command

        command.upgrade(self.alembic_config(), revision)

    def downgrade(self, revision: str) -> None:
        from alembic import command

        command.downgrade(self.alembic_config(), revision)

    def ensure_schema(self) -> None:
        """Bring the schema up to date when the config allows it.

        A schema already at ``HEAD_REVISION`` is recognised by reading the
        version table, as Alembic would; Alembic itself is loaded only when
        there is something to upgrade.
        """
        if not self.config.auto_migrate:
            return
        try:
            if self._stamped_revisions() != (HEAD_REVISION,):
                self.upgrade()
        except OperationalError as exc:
            raise TemporaryFailure(f"database unavailable: {_first_line(exc)}") from exc

    def dispose(self) -> None:
        self.engine.dispose()

    def _stamped_revisions(self) -> tuple[str, ...]:
        """The rows of Alembic's version table; none when it does not exist yet."""
        with self.engine.connect() as connection:
            if not inspect(connection).has_table(VERSION_TABLE):
                return ()
            return tuple(connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def open_database(config: DatabaseConfig, *, migrate: bool = True) -> Database:
    database = Database(config)
    if migrate:
        database.ensure_schema()
    return database
