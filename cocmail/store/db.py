"""The database connection and the one unit of work per message, job or command.

``unit_of_work()`` is the only place that commits. A failure of the database
itself (unreachable, locked past the busy timeout, read-only, full) becomes
``StoreUnavailable`` after the transaction is rolled back, so callers can answer
"try again later" knowing nothing was half-written.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, make_url
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from cocmail.config import Database
from cocmail.errors import StoreUnavailable, describe
from cocmail.keys.master import MasterKeys
from cocmail.store import sealing
from cocmail.store.jsontext import json_text
from cocmail.store.keyring import KEYS, Keyring

log = logging.getLogger(__name__)
# Set by ``writes.scrub_after_commit`` (kept here too: the store knows no writes).
SCRUB = "cocmail_scrub"

# Errors that mean "the database did not take this", as opposed to a bug in
# what we asked of it.
UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeout)
# An execution option: this transaction only reads (see ``Store.reading``).
READ_ONLY = "cocmail_read_only"


class Store:
    def __init__(self, url: str, busy_timeout: dt.timedelta = dt.timedelta(seconds=10),
                 pool_size: int = 8) -> None:
        self.url = url
        self.engine = make_engine(url, busy_timeout, pool_size)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.keyring: Keyring | None = None

        @event.listens_for(self.engine, "checkout")
        def _keys(_dbapi_conn: Any, record: Any, _proxy: Any) -> None:
            # What a writer needs a key for (the history's chain) finds it here.
            record.info[KEYS] = self.keyring

    def use_keys(self, master: MasterKeys, now: dt.datetime,
                 reload: Callable[[], MasterKeys] | None = None) -> None:
        """Open the store's keys with the master keys (made, in a store that has
        none yet), for every connection from now on; ``reload`` reads the master
        keys again (``Keyring.reload``)."""
        keyring = Keyring(master, reload=reload)
        try:
            keyring.prepare(self.engine, now, {READ_ONLY: True})
        except UNAVAILABLE as exc:
            raise StoreUnavailable(_describe(exc)) from exc
        self.keyring = keyring
        # What a sealed column's type is given when it opens a value (``store/sealing.py``).
        setattr(self.engine.dialect, sealing.KEYRING, keyring)

    @classmethod
    def of(cls, database: Database) -> Store:
        """The store the ``[database]`` section names."""
        return cls(database.url, database.busy_timeout, database.pool_size)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        session = self._sessions()
        scrub = False
        try:
            yield session
            scrub = bool(session.in_transaction() and session.connection().info.pop(SCRUB,
                                                                                  False))
            session.commit()
        except UNAVAILABLE as exc:
            session.rollback()
            raise StoreUnavailable(_describe(exc)) from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
        if scrub:
            self.scrub()

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A transaction that only reads. On SQLite it takes no write lock (WAL
        readers do not block the writer), so a long read — rendering a batch of
        mail — never holds up the intake. Never committed: anything written is
        discarded."""
        session = self._sessions()
        try:
            session.connection(execution_options={READ_ONLY: True})
            yield session
        except UNAVAILABLE as exc:
            raise StoreUnavailable(_describe(exc)) from exc
        finally:
            session.rollback()
            session.close()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction on a plain connection, for the intake's hot path, where
        the ORM session's bookkeeping costs more than the work. Same guarantees
        and error mapping as ``unit_of_work``."""
        scrub = False
        try:
            with self.engine.begin() as connection:
                try:
                    yield connection
                finally:
                    scrub = bool(connection.info.pop(SCRUB, False))
        except UNAVAILABLE as exc:
            raise StoreUnavailable(_describe(exc)) from exc
        if scrub:
            self.scrub()

    def scrub(self) -> None:
        """After a transaction that deleted case content has committed: on SQLite,
        copy the write-ahead log into the database and empty it (the freed pages
        are zeroed as they are freed: ``secure_delete``), so no byte of what was
        deleted stays in any of its files. A reader in another process holding
        an older snapshot makes the checkpoint wait (the busy timeout), and it is
        tried three times. PostgreSQL keeps dead row
        versions until a vacuum; those hold ciphertext once encryption at rest
        exists, and nothing is done here."""
        if not self.is_sqlite:
            return
        for _ in range(3):
            # The busy timeout is how long one attempt waits for the readers.
            try:
                with self.engine.connect() as connection:
                    # On the DB-API connection: outside a transaction, which a
                    # checkpoint cannot run in.
                    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
                    try:
                        busy = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                    finally:
                        cursor.close()
            except (*UNAVAILABLE, self.engine.dialect.loaded_dbapi.Error) as exc:
                log.warning("store: could not empty the write-ahead log after a purge: %s",
                            _describe(exc))
                return
            if busy is not None and busy[0] == 0:
                return
        log.warning("store: the write-ahead log is still in use after a purge: what was "
                    "purged stays in it until a later checkpoint overwrites it")

    def dispose(self) -> None:
        self.engine.dispose()


def _describe(exc: Exception) -> str:
    """One line about a database failure, without the SQL or its parameters (which may
    hold a report's text)."""
    orig = getattr(exc, "orig", None)
    return describe(orig if orig is not None else exc)


def make_engine(url: str, busy_timeout: dt.timedelta, pool_size: int = 8) -> Engine:
    """The engine for ``url``. Its errors never show a statement's parameters
    (``hide_parameters``): they hold a report's bytes, text and addresses, and
    the error of a bug is written to the log with its traceback."""
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"timeout": busy_timeout.total_seconds(), "check_same_thread": False},
            hide_parameters=True, json_serializer=json_text,
        )
        _sqlite_setup(engine, busy_timeout)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=pool_size,
                         max_overflow=max(1, pool_size // 2), pool_timeout=10,
                         hide_parameters=True, json_serializer=json_text)


def _sqlite_setup(engine: Engine, busy_timeout: dt.timedelta) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide where transactions start.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a transaction survives power loss once COMMIT returns. We answer
        # 250 only after that, so the stronger setting is the honest one.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Deleted content is overwritten, not left in free pages (a purge).
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout.total_seconds() * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # Take the write lock up front: a deferred transaction that reads and
        # then writes can fail at once with "database is locked" instead of
        # waiting its turn. A read-only transaction takes no lock at all.
        if conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
