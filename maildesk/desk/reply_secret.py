"""The secret that signs agent reply addresses: from ``desk.secret_file``, or made once and kept.

Without a configured file, the first daemon to need it writes 32 random
bytes into the ``settings`` table, in a transaction of its own (a secret
handed out in a transaction that then rolled back would sign addresses no
one can check); every other daemon on the database reads the same. Call
it outside any other transaction (SQLite has one writer).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from maildesk.config import Config
from maildesk.db import Database
from maildesk.desk.agents import new_secret, read_secret_file
from maildesk.models import Setting

NAME = "agent_reply_secret"
_known: dict[str, bytes] = {}
"""Secret files already read (a file does not change while maildesk runs)."""


def reply_secret(db: Database, config: Config) -> bytes:
    """The secret, from the file or the database (made there now if nobody has yet)."""
    if config.desk.secret_file is not None:
        key = f"file:{config.desk.secret_file}"
        if key not in _known:
            _known[key] = read_secret_file(config.desk.secret_file)
        return _known[key]
    with db.reading() as connection:
        stored = connection.execute(_STORED).scalar()
    if stored is not None:
        return stored
    with db.session() as session:
        return _stored_secret(session)


_STORED = select(Setting.value).where(Setting.name == NAME)


def _stored_secret(session: Session) -> bytes:
    connection = session.connection()
    insert = postgresql_insert if connection.dialect.name == "postgresql" else sqlite_insert
    # Two daemons making one at the same moment: the first row wins and both read it.
    connection.execute(insert(Setting).values(name=NAME, value=new_secret()).on_conflict_do_nothing())
    return connection.execute(_STORED).scalar_one()
