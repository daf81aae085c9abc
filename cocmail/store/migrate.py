"""Applying the Alembic migrations, from the CLI and from ``serve`` on an empty database."""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text

from cocmail.errors import StoreUnavailable
from cocmail.store.db import UNAVAILABLE, Store, _describe

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

# The schema this cocmail needs: the newest revision in migrations/versions
# (tests/store/test_migrate.py holds the two together). Every start of the
# daemon, the CLI and the pipe checks it; reading it from the scripts meant
# importing Alembic and every migration, a sixth of a second each time.
HEAD = "0011"


def _alembic_config(store: Store) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(resources.files("cocmail.migrations")))
    cfg.attributes["engine"] = store.engine
    return cfg


def script_head(store: Store) -> str:
    """The newest revision of the migration scripts (what ``HEAD`` must be)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config(store)).get_current_head()
    assert head is not None
    return head


def current_revision(store: Store) -> str | None:
    """The revision the database is at (None: none yet), read as Alembic
    keeps it: the one row of ``alembic_version``."""
    try:
        with store.engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            found = sorted(conn.execute(text("SELECT version_num FROM alembic_version"))
                           .scalars())
    except UNAVAILABLE as exc:
        raise StoreUnavailable(_describe(exc)) from exc
    return ",".join(found) or None  # a row for each head: one, in cocmail's straight line


def behind(store: Store) -> str | None:
    """Why this cocmail cannot use the database as it is, or None when its schema
    is the one this cocmail needs (the one check the daemon, the CLI and the pipe
    make before they read or write)."""
    current = current_revision(store)
    if current == HEAD:
        return None
    return (f"the database is at revision {current or 'none (empty)'}, this cocmail needs "
            f"{HEAD}: run `cocmail db upgrade`")


def is_empty(store: Store) -> bool:
    try:
        with store.engine.connect() as conn:
            return not inspect(conn).get_table_names()
    except UNAVAILABLE as exc:
        raise StoreUnavailable(_describe(exc)) from exc


def upgrade(store: Store, revision: str = "head") -> None:
    from alembic import command

    try:
        command.upgrade(_alembic_config(store), revision)
    except UNAVAILABLE as exc:
        raise StoreUnavailable(_describe(exc)) from exc


def downgrade(store: Store, revision: str) -> None:
    from alembic import command

    command.downgrade(_alembic_config(store), revision)
