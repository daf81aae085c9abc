"""Encryption at rest: the data keys of case content, which key each case and
message is sealed under, the keyed hashes addresses are matched by, and room
for sealed values where a column was sized for the value in the clear.

The content already stored is sealed by ``cocmail keys rotate`` (it needs the
master key, which a migration never sees); until then it is read as it is.

Revision ID: 0011
Revises: 0010
"""
import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

# Columns sized for an address or a name in the clear: a sealed one is longer.
# (SQLite does not hold a text column to its size.)
WIDENED = (("participants", "email", 320), ("participants", "name", 200),
           ("messages", "envelope_from", 320), ("messages", "from_address", 320),
           ("attachments", "filename", 500), ("outbox", "recipient", 320))


def upgrade() -> None:
    op.create_table('content_keys',
    sa.Column('ref', sa.String(length=16), nullable=False),
    sa.Column('key_id', sa.String(length=12), nullable=False),
    sa.Column('wrapped', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('ref', name=op.f('pk_content_keys'))
    )
    op.create_index(op.f('ix_content_keys_key_id'), 'content_keys', ['key_id'], unique=False)
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('key_ref', sa.String(length=16), nullable=True))
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('key_ref', sa.String(length=16), nullable=True))
    with op.batch_alter_table('participants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email_index', sa.String(length=64), nullable=True))
    op.create_index('ix_participants_case_id_role_email_index', 'participants',
                    ['case_id', 'role', 'email_index'], unique=True)
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('recipient_index', sa.String(length=64), nullable=True))
    op.create_index('ix_outbox_recipient_index_created_at', 'outbox',
                    ['recipient_index', 'created_at'], unique=False)
    op.drop_index('ix_outbox_recipient_created_at', table_name='outbox')
    if op.get_context().dialect.name == "postgresql":
        # A sealed address never equals another: the constraint on the address
        # in the clear says nothing any more (the index on its keyed hash does).
        # SQLite keeps it, unused: dropping it would copy the table.
        op.drop_constraint('uq_participants_case_id_role_email', 'participants')
        for table, column, _ in WIDENED:
            op.alter_column(table, column, type_=sa.Text())


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        for table, column, length in WIDENED:
            op.alter_column(table, column, type_=sa.String(length=length),
                            postgresql_using=f"left({column}, {length})")
        op.create_unique_constraint('uq_participants_case_id_role_email', 'participants',
                                    ['case_id', 'role', 'email'])
    op.create_index('ix_outbox_recipient_created_at', 'outbox', ['recipient', 'created_at'])
    op.drop_index('ix_outbox_recipient_index_created_at', table_name='outbox')
    op.drop_index('ix_participants_case_id_role_email_index', table_name='participants')
    # Dropped in place: on SQLite a batch would copy each table, and the copy's
    # table-level foreign keys make the next step down (0008's DROP COLUMN) fail.
    for table, column in (("outbox", "recipient_index"), ("participants", "email_index"),
                          ("messages", "key_ref"), ("cases", "key_ref")):
        op.drop_column(table, column)
    op.drop_index(op.f('ix_content_keys_key_id'), table_name='content_keys')
    op.drop_table('content_keys')
