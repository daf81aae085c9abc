"""Members as rows with one identity across a change of handle or email; seats,
recusals and keep-outs that belong to that identity; a keep-out of one message;
the key of a member reply's new text (a replay is recognised by it); events
whose free text a purge may clear.

Existing seats and recusals name members by handle: each handle becomes a
member (with the address of its latest seat, or none for a member who was only
ever kept out), and the next start matches the roster to them. A member's seat
keeps the member's key instead of an address from now on; the address is the
member's alone.

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('members',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('handle', sa.String(length=32), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('joined_at', sa.DateTime(), nullable=False),
    sa.Column('left_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_members')),
    sa.UniqueConstraint('handle', name=op.f('uq_members_handle')),
    sa.UniqueConstraint('email', name=op.f('uq_members_email'))
    )
    op.create_table('member_handles',
    sa.Column('handle', sa.String(length=32), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_member_handles_member_id_members')),
    sa.PrimaryKeyConstraint('handle', name=op.f('pk_member_handles'))
    )
    op.create_table('message_keep_outs',
    sa.Column('message_id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_message_keep_outs_member_id_members')),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_message_keep_outs_message_id_messages')),
    sa.PrimaryKeyConstraint('message_id', 'member_id', name=op.f('pk_message_keep_outs'))
    )
    # Added in place (SQLite: ALTER TABLE ADD COLUMN ... REFERENCES), not by
    # copying the table: messages and mail point at its rows.
    if op.get_context().dialect.name == "sqlite":
        op.execute("ALTER TABLE participants ADD COLUMN member_id INTEGER "
                   "CONSTRAINT fk_participants_member_id_members REFERENCES members (id)")
    else:
        op.add_column('participants', sa.Column('member_id', sa.Integer(), sa.ForeignKey('members.id', name='fk_participants_member_id_members'), nullable=True))
    op.add_column('participants', sa.Column('left_at', sa.DateTime(), nullable=True))
    op.create_index('ix_participants_member_id', 'participants', ['member_id'], unique=False)
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('command_key', sa.String(length=64), nullable=True))
        batch_op.create_index('ix_messages_case_id_command_key', ['case_id', 'command_key'], unique=False)
    with op.batch_alter_table('recusals', schema=None) as batch_op:
        batch_op.add_column(sa.Column('member_id', sa.Integer(), nullable=True))
    for table in ('follow_ups', 'emergencies'):
        # The reply that set it (a follow-up, an emergency measure): what it causes
        # later goes to no member that reply was kept from.
        if op.get_context().dialect.name == "sqlite":
            op.execute(f"ALTER TABLE {table} ADD COLUMN message_id INTEGER "
                       f"CONSTRAINT fk_{table}_message_id_messages REFERENCES messages (id)")
        else:
            op.add_column(table, sa.Column('message_id', sa.Integer(), sa.ForeignKey('messages.id', name=f'fk_{table}_message_id_messages'), nullable=True))

    # Every handle a seat or a recusal names becomes a member: the address of its
    # latest seat, none for a member only ever kept out.
    op.execute(
        "INSERT INTO members (handle, email, name, active, joined_at) "
        "SELECT p.handle, p.email, p.name, true, p.created_at FROM participants p "
        "WHERE p.role = 'member' AND p.handle IS NOT NULL AND p.id = ("
        "  SELECT max(q.id) FROM participants q WHERE q.role = 'member' AND q.handle = p.handle)"
        " AND NOT EXISTS (SELECT 1 FROM participants o WHERE o.role = 'member'"
        "  AND lower(o.email) = lower(p.email) AND o.handle IS NOT NULL AND o.handle < p.handle)")
    op.execute(
        "INSERT INTO members (handle, email, name, active, joined_at) "
        "SELECT r.handle, NULL, NULL, true, min(r.at) FROM recusals r "
        "WHERE r.handle NOT IN (SELECT handle FROM members) GROUP BY r.handle")
    op.execute(
        "INSERT INTO members (handle, email, name, active, joined_at) "
        "SELECT p.handle, NULL, NULL, true, min(p.created_at) FROM participants p "
        "WHERE p.role = 'member' AND p.handle IS NOT NULL "
        "AND p.handle NOT IN (SELECT handle FROM members) GROUP BY p.handle")
    op.execute("INSERT INTO member_handles (handle, member_id) SELECT handle, id FROM members")
    op.execute("UPDATE participants SET member_id = (SELECT m.id FROM members m "
               "WHERE m.handle = participants.handle) WHERE role = 'member'")
    op.execute("UPDATE recusals SET member_id = (SELECT m.id FROM members m "
               "WHERE m.handle = recusals.handle)")
    # A member's seat keeps a key of the member, not their address (which is the
    # member's, and may change): cocmail.store.writes.seat_key.
    op.execute("UPDATE participants SET email = 'member:' || CAST(member_id AS VARCHAR(20)) "
               "WHERE role = 'member' AND member_id IS NOT NULL")

    with op.batch_alter_table('recusals', schema=None) as batch_op:
        batch_op.drop_constraint('uq_recusals_case_id_handle', type_='unique')
        batch_op.drop_column('handle')
        batch_op.alter_column('member_id', existing_type=sa.Integer(), nullable=False)
        batch_op.create_foreign_key(batch_op.f('fk_recusals_member_id_members'), 'members', ['member_id'], ['id'])
        batch_op.create_unique_constraint(batch_op.f('uq_recusals_case_id_member_id'), ['case_id', 'member_id'])

    _events_data_may_be_cleared()


def _events_data_may_be_cleared() -> None:
    """Events stay append-only, except that a purge may clear the free text in
    their ``data``: every other column of a row is fixed, and no row is deleted."""
    fixed = ("id", "case_id", "at", "kind", "actor", "message_id")
    if op.get_context().dialect.name == "sqlite":
        op.execute("DROP TRIGGER events_no_update")
        changed = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in fixed)
        op.execute(
            f"CREATE TRIGGER events_no_update BEFORE UPDATE ON events WHEN {changed} "
            "BEGIN SELECT RAISE(ABORT, 'events are append-only'); END")
    else:
        new = ", ".join(f"NEW.{c}" for c in fixed)
        old = ", ".join(f"OLD.{c}" for c in fixed)
        op.execute(
            "CREATE OR REPLACE FUNCTION cocmail_events_append_only() RETURNS trigger AS $$ "
            f"BEGIN IF TG_OP = 'DELETE' OR ({new}) IS DISTINCT FROM ({old}) THEN "
            "RAISE EXCEPTION 'events are append-only'; END IF; RETURN NEW; END $$ "
            "LANGUAGE plpgsql")


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        op.execute("DROP TRIGGER events_no_update")
        op.execute("CREATE TRIGGER events_no_update BEFORE UPDATE ON events "
                   "BEGIN SELECT RAISE(ABORT, 'events are append-only'); END")
    else:
        op.execute(
            "CREATE OR REPLACE FUNCTION cocmail_events_append_only() RETURNS trigger AS $$ "
            "BEGIN RAISE EXCEPTION 'events are append-only'; END $$ LANGUAGE plpgsql")
    op.execute("UPDATE participants SET email = COALESCE((SELECT m.email FROM members m "
               "WHERE m.id = participants.member_id), participants.email) "
               "WHERE role = 'member'")
    with op.batch_alter_table('recusals', schema=None) as batch_op:
        batch_op.add_column(sa.Column('handle', sa.String(length=32), nullable=True))
    op.execute("UPDATE recusals SET handle = (SELECT m.handle FROM members m "
               "WHERE m.id = recusals.member_id)")
    with op.batch_alter_table('recusals', schema=None) as batch_op:
        batch_op.drop_constraint('uq_recusals_case_id_member_id', type_='unique')
        batch_op.drop_constraint('fk_recusals_member_id_members', type_='foreignkey')
        batch_op.drop_column('member_id')
        batch_op.alter_column('handle', existing_type=sa.String(length=32), nullable=False)
        batch_op.create_unique_constraint('uq_recusals_case_id_handle', ['case_id', 'handle'])
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index('ix_messages_case_id_command_key')
        batch_op.drop_column('command_key')
    for table in ('follow_ups', 'emergencies'):
        if op.get_context().dialect.name != "sqlite":
            op.drop_constraint(f'fk_{table}_message_id_messages', table, type_='foreignkey')
        op.drop_column(table, 'message_id')
    op.drop_index('ix_participants_member_id', 'participants')
    if op.get_context().dialect.name != "sqlite":
        op.drop_constraint('fk_participants_member_id_members', 'participants', type_='foreignkey')
    op.drop_column('participants', 'left_at')
    op.drop_column('participants', 'member_id')
    op.drop_table('message_keep_outs')
    op.drop_table('member_handles')
    op.drop_table('members')
