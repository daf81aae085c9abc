"""Rotation overrides: someone on triage duty instead of someone else for a while.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('rotation_overrides',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('member', sa.String(length=32), nullable=False),
    sa.Column('instead_of', sa.String(length=32), nullable=False),
    sa.Column('starts_at', sa.DateTime(), nullable=False),
    sa.Column('ends_at', sa.DateTime(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rotation_overrides'))
    )
    with op.batch_alter_table('rotation_overrides', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rotation_overrides_ends_at'), ['ends_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('rotation_overrides', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rotation_overrides_ends_at'))
    op.drop_table('rotation_overrides')
