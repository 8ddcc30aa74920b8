"""Inbound: what processing did with each message; tickets: Outlook's conversation index.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('inbound', schema=None) as batch_op:
        batch_op.add_column(sa.Column('disposition', sa.Text(), nullable=True))
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('thread_index', sa.String(length=255), nullable=True))


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35+), not a batch copy: SQLite refuses to
    # drop and re-create a table that other tables' rows reference.
    with op.batch_alter_table('tickets', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('thread_index')
    with op.batch_alter_table('inbound', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('disposition')
