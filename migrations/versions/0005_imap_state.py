"""The IMAP poller's place in each folder: last UID stored, under which UIDVALIDITY.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('imap_state',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account', sa.String(length=400), nullable=False),
    sa.Column('uidvalidity', sa.BigInteger(), nullable=False),
    sa.Column('last_uid', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_imap_state')),
    sa.UniqueConstraint('account', name=op.f('uq_imap_state_account'))
    )


def downgrade() -> None:
    op.drop_table('imap_state')
