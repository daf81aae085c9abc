"""The schema check every start makes, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys

from cocmail.store import migrate
from cocmail.store.db import Store


def test_the_schema_needed_is_the_newest_migration(db_url: str) -> None:
    store = Store(db_url)
    assert migrate.script_head(store) == migrate.HEAD
    assert migrate.current_revision(store) is None
    assert migrate.behind(store) == ("the database is at revision none (empty), this cocmail "
                                     f"needs {migrate.HEAD}: run `cocmail db upgrade`")
    migrate.upgrade(store)
    assert migrate.current_revision(store) == migrate.HEAD
    assert migrate.behind(store) is None
    migrate.downgrade(store, "-1")
    before = migrate.current_revision(store)
    assert before is not None and before != migrate.HEAD
    assert migrate.behind(store) == (f"the database is at revision {before}, this cocmail "
                                     f"needs {migrate.HEAD}: run `cocmail db upgrade`")
    store.dispose()


def test_the_check_does_not_load_alembic() -> None:
    # Alembic and the scripts cost a sixth of a second to load, at every start.
    code = ("import sys; from cocmail.store import migrate; "
            "assert 'alembic' not in sys.modules, sorted(m for m in sys.modules if 'alembic' in m)")
    subprocess.run([sys.executable, "-c", code], check=True)
