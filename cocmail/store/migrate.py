"""Applying the Alembic migrations, from the CLI and from ``serve`` on an empty database."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from cocmail.errors import StoreUnavailable
from cocmail.store.db import UNAVAILABLE, Store, _describe


def _alembic_config(store: Store) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(resources.files("cocmail.migrations")))
    cfg.attributes["engine"] = store.engine
    return cfg


def head_revision(store: Store) -> str:
    head = ScriptDirectory.from_config(_alembic_config(store)).get_current_head()
    assert head is not None
    return head


def current_revision(store: Store) -> str | None:
    try:
        with store.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except UNAVAILABLE as exc:
        raise StoreUnavailable(_describe(exc)) from exc


def behind(store: Store) -> str | None:
    """Why this cocmail cannot use the database as it is, or None when its schema
    is the one this cocmail needs (the one check the daemon, the CLI and the pipe
    make before they read or write)."""
    current, head = current_revision(store), head_revision(store)
    if current == head:
        return None
    return (f"the database is at revision {current or 'none (empty)'}, this cocmail needs "
            f"{head}: run `cocmail db upgrade`")


def is_empty(store: Store) -> bool:
    try:
        with store.engine.connect() as conn:
            return not inspect(conn).get_table_names()
    except UNAVAILABLE as exc:
        raise StoreUnavailable(_describe(exc)) from exc


def upgrade(store: Store, revision: str = "head") -> None:
    try:
        command.upgrade(_alembic_config(store), revision)
    except UNAVAILABLE as exc:
        raise StoreUnavailable(_describe(exc)) from exc


def downgrade(store: Store, revision: str) -> None:
    command.downgrade(_alembic_config(store), revision)
