"""The newest migration's revision id, known without loading Alembic.

Every start compares the database's stamped revision with this constant, so
the common case (schema already current) costs one query and no Alembic
import. Adding a migration means updating it; tests/unit/test_db.py checks it
against the head Alembic finds in ``versions/``.
"""

HEAD_REVISION = "0005"
