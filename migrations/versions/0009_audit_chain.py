"""The history as a hash chain: each event's place in its case, the hash of the
one before it, keyed digests of its values and its own hash; each case the head
of its chain; the keyring that holds the chain's key, wrapped by the master key.

The events already stored are chained by ``cocmail db upgrade`` after this
migration (it needs the master key, which a migration never sees). Once an
event is chained, its link is fixed like its other columns.

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

FIXED = ("id", "case_id", "at", "kind", "actor", "message_id")
LINK = ("seq", "prev_hash", "digests", "hash")


def upgrade() -> None:
    op.create_table('keyring',
    sa.Column('name', sa.String(length=20), nullable=False),
    sa.Column('key_id', sa.String(length=12), nullable=False),
    sa.Column('wrapped', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_keyring'))
    )
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('head_seq', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('head_hash', sa.String(length=64), nullable=True))
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('seq', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('prev_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('digests', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('hash', sa.String(length=64), nullable=True))
    _append_only(FIXED, LINK)


def downgrade() -> None:
    # On SQLite dropping a column copies the table, and its triggers go with the
    # old one: they are made again after.
    with op.batch_alter_table('events', schema=None) as batch_op:
        for column in reversed(LINK):
            batch_op.drop_column(column)
    _append_only(FIXED, ())
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_column('head_hash')
        batch_op.drop_column('head_seq')
    op.drop_table('keyring')


def _append_only(fixed: tuple[str, ...], link: tuple[str, ...]) -> None:
    """No event is deleted; its ``fixed`` columns never change, nor its ``link``
    columns once set (a purge may still clear free text in ``data``)."""
    if op.get_context().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS events_no_update")
        op.execute("CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events "
                   "BEGIN SELECT RAISE(ABORT, 'events are append-only'); END")
        changed = [f"NEW.{c} IS NOT OLD.{c}" for c in fixed]
        if link:
            changed.append("(OLD.hash IS NOT NULL AND ("
                           + " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in link) + "))")
        op.execute(
            f"CREATE TRIGGER events_no_update BEFORE UPDATE ON events WHEN {' OR '.join(changed)} "
            "BEGIN SELECT RAISE(ABORT, 'events are append-only'); END")
    else:
        # json has no equality: compare the link's digests as text.
        def column(row: str, name: str) -> str:
            return f"{row}.{name}::text" if name == "digests" else f"{row}.{name}"

        new = ", ".join(column("NEW", c) for c in fixed)
        old = ", ".join(column("OLD", c) for c in fixed)
        condition = f"({new}) IS DISTINCT FROM ({old})"
        if link:
            new_link = ", ".join(column("NEW", c) for c in link)
            old_link = ", ".join(column("OLD", c) for c in link)
            condition += (f" OR (OLD.hash IS NOT NULL AND ({new_link}) IS DISTINCT FROM "
                          f"({old_link}))")
        op.execute(
            "CREATE OR REPLACE FUNCTION cocmail_events_append_only() RETURNS trigger AS $$ "
            f"BEGIN IF TG_OP = 'DELETE' OR {condition} THEN "
            "RAISE EXCEPTION 'events are append-only'; END IF; RETURN NEW; END $$ "
            "LANGUAGE plpgsql")
