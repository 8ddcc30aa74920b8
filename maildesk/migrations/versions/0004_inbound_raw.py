"""Inbound: the raw bytes in a table of their own, written once and never updated.

SQLite rewrites a whole row on every UPDATE, so marking a spooled message
done rewrote its raw bytes (megabytes, for a mail with attachments) a
second time. With the bytes in ``inbound_raw`` the spool row that changes
stays small.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('inbound_raw',
    sa.Column('inbound_id', sa.Integer(), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['inbound_id'], ['inbound.id'], name=op.f('fk_inbound_raw_inbound_id_inbound')),
    sa.PrimaryKeyConstraint('inbound_id', name=op.f('pk_inbound_raw'))
    )
    op.execute('INSERT INTO inbound_raw (inbound_id, raw) SELECT id, raw FROM inbound')
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35+), never a batch copy of the table: other
    # tables reference inbound, and SQLite refuses to drop a referenced table mid-copy.
    with op.batch_alter_table('inbound', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('raw')


def downgrade() -> None:
    with op.batch_alter_table('inbound', schema=None, recreate='never') as batch_op:
        batch_op.add_column(sa.Column('raw', sa.LargeBinary(), nullable=True))
    op.execute('UPDATE inbound SET raw = (SELECT raw FROM inbound_raw WHERE inbound_raw.inbound_id = inbound.id)')
    if op.get_bind().dialect.name != 'sqlite':  # SQLite cannot add NOT NULL in place; the column stays nullable
        op.alter_column('inbound', 'raw', existing_type=sa.LargeBinary(), nullable=False)
    op.drop_table('inbound_raw')
