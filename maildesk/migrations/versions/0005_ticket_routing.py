"""Tickets: the SLA policy rules chose, whether a rule called the ticket spam; indexes for routing
(an agent's open tickets, a requester's earlier ones); settings (the secret of agent reply addresses); complainers (no automatic mail to them).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE ... ADD COLUMN: SQLite refuses to re-create a table that other rows reference.
    with op.batch_alter_table('tickets', schema=None, recreate='never') as batch_op:
        batch_op.add_column(sa.Column('sla_policy', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('spam', sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_index('ix_tickets_assignee', 'tickets', ['assignee'], unique=False)
    op.create_index('ix_tickets_requester', 'tickets', ['requester'], unique=False)
    op.create_table(
        'complainers',
        sa.Column('address', sa.String(length=320), nullable=False),
        sa.Column('reported_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('ticket_id', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id']),
        sa.PrimaryKeyConstraint('address'),
    )
    op.create_table(
        'settings',
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('value', sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint('name'),
    )


def downgrade() -> None:
    op.drop_table('settings')
    op.drop_table('complainers')
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35+), as in 0003.
    op.drop_index('ix_tickets_requester', table_name='tickets')
    op.drop_index('ix_tickets_assignee', table_name='tickets')
    with op.batch_alter_table('tickets', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('spam')
        batch_op.drop_column('sla_policy')
