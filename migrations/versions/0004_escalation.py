"""Escalation and hand-offs: how far each case has escalated, the hand-offs whose
mail was queued, and the outbox's priorities (pages before reports).

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('escalated_through', sa.Integer(), server_default='0',
                                      nullable=False))
        batch_op.create_index('ix_cases_waiting', ['acknowledged_at', 'closed_at'], unique=False)
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('priority', sa.Integer(), server_default='2',
                                      nullable=False))
        batch_op.drop_index('ix_outbox_status_due_at')
        batch_op.create_index('ix_outbox_claim', ['status', 'priority', 'due_at'],
                              unique=False)
    op.execute("UPDATE outbox SET priority = 0 WHERE kind IN ('ack', 'page')")
    op.create_table('handoffs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('outgoing', sa.JSON(), nullable=False),
    sa.Column('incoming', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_handoffs')),
    sa.UniqueConstraint('at', name=op.f('uq_handoffs_at'))
    )


def downgrade() -> None:
    op.drop_table('handoffs')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_claim')
        batch_op.create_index('ix_outbox_status_due_at', ['status', 'due_at'], unique=False)
        batch_op.drop_column('priority')
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_index('ix_cases_waiting')
        batch_op.drop_column('escalated_through')
