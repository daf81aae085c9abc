"""Retention: the days it ran (once a day, across restarts and replicas) and what
it purged.

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('retention_runs',
    sa.Column('day', sa.String(length=10), nullable=False),
    sa.Column('cases', sa.Integer(), nullable=False),
    sa.Column('messages', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('day', name=op.f('pk_retention_runs'))
    )


def downgrade() -> None:
    op.drop_table('retention_runs')
