"""Inserts on the intake's hot path, past the ORM (``store/writes.py`` uses these).

Accepting a message writes four or five rows. Through the ORM's unit of work
that cost more than parsing the message, and even a Core statement spent most
of its time in SQLAlchemy's per-execution bookkeeping rather than in the
database. So these inserts are compiled by SQLAlchemy once per table, column
set and dialect, and executed on the DB-API cursor of the transaction's own
connection, inside the caller's transaction, with SQLAlchemy's own type
processors applied to the values (times, JSON, booleans come out exactly as
through the ORM). Errors are raised as SQLAlchemy's exceptions, so the unit of
work maps them as usual; like the engine's, they never show the parameters.
They take plain values: the store still knows no mail.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import DateTime, bindparam, func, insert, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError

from cocmail.store.models import UTCDateTime


def run(connection: Connection, sql: str, params: Any, fetch: bool = False) -> list[Any]:
    """Execute on the DB-API cursor; DB-API errors come out as SQLAlchemy's."""
    dialect = connection.dialect
    dbapi = dialect.loaded_dbapi
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql, params)
        return list(cursor.fetchall()) if fetch else []
    except dbapi.Error as exc:
        raise DBAPIError.instance(sql, params, exc, dbapi.Error, hide_parameters=True,
                                  dialect=dialect) from exc
    finally:
        cursor.close()


@dataclass(frozen=True)
class _Compiled:
    sql: str
    positional: bool  # the DB-API takes a tuple (SQLite), not a dict (psycopg)
    # Each parameter with its type processor, in the order a tuple gives them.
    processors: tuple[tuple[str, Callable[[Any], Any] | None], ...]


# Per dialect object, not per dialect name: a type's bind processor is made for
# one engine's dialect, and a sealed column's asks it for its store's keyring.
# (An engine's dialect lives as long as the process: a daemon has one.)
_compiled_cache: dict[Dialect, dict[tuple[str, tuple[str, ...], bool, bool], _Compiled]] = {}


def _compile(dialect: Dialect, table: Any, keys: tuple[str, ...],
             skip_duplicates: bool = False, ids: bool = False) -> _Compiled:
    """The INSERT of ``keys`` into ``table``; with ``ids``, one that gives the new id."""
    cache = _compiled_cache.setdefault(dialect, {})
    cache_key = (table.name, keys, skip_duplicates, ids)
    found = cache.get(cache_key)
    if found is not None:
        return found
    values: dict[str, Any] = {key: bindparam(key) for key in keys}
    statement: Any
    if not skip_duplicates:
        statement = insert(table).values(values)
    elif dialect.name == "postgresql":
        statement = postgresql_insert(table).values(values).on_conflict_do_nothing()
    else:
        statement = sqlite_insert(table).values(values).on_conflict_do_nothing()
    if ids and dialect.name != "sqlite":  # SQLite's come from last_insert_rowid()
        statement = statement.returning(table.c.id)
    compiled = statement.compile(dialect=dialect)
    order = tuple(compiled.positiontup or ()) if compiled.positional else keys
    result = _Compiled(
        sql=str(compiled),
        positional=bool(compiled.positional),
        processors=tuple((key, _processor(table.c[key], dialect)) for key in order),
    )
    cache[cache_key] = result
    return result


def _processor(column: Any, dialect: Dialect) -> Callable[[Any], Any] | None:
    """``column``'s bind processor. A time's is remembered for the last value: the
    rows of one batch carry the same "now" over and over (a case, its seats, its
    events and its mail), and on SQLite turning a time into text was a tenth of
    the cost of storing a report."""
    process: Callable[[Any], Any] | None = column.type.dialect_impl(dialect).bind_processor(
        dialect)
    if process is None or not isinstance(column.type, DateTime | UTCDateTime):
        return process
    last: tuple[Any, Any] = (None, None)  # (value, processed): one assignment, thread-safe

    def remembered(value: Any) -> Any:
        nonlocal last
        seen, processed = last
        if value is seen and value is not None:  # the same object: times never change
            return processed
        processed = process(value)
        last = (value, processed)
        return processed

    return remembered


def _bind(compiled: _Compiled, row: dict[str, Any]) -> Any:
    """``row``'s values as the DB-API takes them: type-processed, in order."""
    values = [proc(row[key]) if proc else row[key] for key, proc in compiled.processors]
    if compiled.positional:
        return tuple(values)
    return dict(zip([key for key, _ in compiled.processors], values, strict=True))


def insert_many(db: Connection, table: Any, rows: list[dict[str, Any]]) -> list[int]:
    """Insert ``rows``; their new ids, in the order given.

    On SQLite, each run of rows with the same columns is one ``executemany``:
    its rows take consecutive ids ending at ``last_insert_rowid()``, since a new
    rowid is one more than the largest in the table and nobody else can insert
    while this transaction holds SQLite's one write lock. PostgreSQL gives each
    row's id back with RETURNING."""
    if not rows:
        return []
    dialect = db.dialect
    dbapi = dialect.loaded_dbapi
    sqlite = dialect.name == "sqlite"
    cursor = db.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    ids: list[int] = []
    try:
        for keys, run in itertools.groupby(rows, key=lambda row: tuple(sorted(row))):
            compiled = _compile(dialect, table, keys, ids=True)
            params = [_bind(compiled, row) for row in run]
            try:
                if sqlite:
                    cursor.executemany(compiled.sql, params)
                    cursor.execute("SELECT last_insert_rowid()")
                    last = int(cursor.fetchone()[0])  # type: ignore[index]
                    ids += range(last - len(params) + 1, last + 1)
                    continue
                for one in params:
                    cursor.execute(compiled.sql, one)
                    ids.append(int(cursor.fetchone()[0]))  # type: ignore[index]
            except dbapi.Error as exc:
                raise DBAPIError.instance(compiled.sql, params, exc, dbapi.Error,
                                          hide_parameters=True, dialect=dialect) from exc
    finally:
        cursor.close()
    return ids


def execute_many(db: Connection, table: Any, rows: list[dict[str, Any]],
                  skip_duplicates: bool = False) -> None:
    """Insert ``rows`` whose ids nobody needs, in the order given: one
    ``executemany`` for each run of rows with the same columns."""
    if not rows:
        return
    dialect = db.dialect
    dbapi = dialect.loaded_dbapi
    cursor = db.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        for keys, run in itertools.groupby(rows, key=lambda row: tuple(sorted(row))):
            group = list(run)
            compiled = _compile(dialect, table, keys, skip_duplicates)
            params = [_bind(compiled, row) for row in group]
            try:
                cursor.executemany(compiled.sql, params)
            except dbapi.Error as exc:
                raise DBAPIError.instance(compiled.sql, params, exc, dbapi.Error,
                                          hide_parameters=True, dialect=dialect) from exc
    finally:
        cursor.close()


def write_blob(db: Connection, table: Any, column: str, row_id: int, size: int,
               pieces: Iterable[bytes]) -> None:
    """Row ``row_id``'s ``column`` set to ``pieces`` joined (``size`` bytes in
    all), written into SQLite's blob piece by piece: a large message is not
    copied whole into the statement as a bound value is. SQLite only."""
    assert db.dialect.name == "sqlite", db.dialect.name
    name = table.name
    db.execute(update(table).where(table.c.id == row_id).values(
        {column: func.zeroblob(size)}))
    written = 0
    with db.connection.dbapi_connection.blobopen(  # type: ignore[union-attr]
            name, column, row_id) as blob:
        for piece in pieces:
            blob.write(piece)
            written += len(piece)
    assert written == size, (written, size)
