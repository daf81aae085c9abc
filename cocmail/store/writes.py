"""The inserts on the intake's hot path.

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

import datetime as dt
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import DateTime, bindparam, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError

from cocmail.store.db import SCRUB
from cocmail.store.models import (
    Attachment,
    Case,
    Event,
    FollowUp,
    Message,
    MessageKeepOut,
    Outbox,
    Participant,
    Quarantine,
    Recusal,
    UTCDateTime,
)

_MESSAGES = Message.__table__
_ATTACHMENTS = Attachment.__table__


def find_messages(
    db: Connection, dedupe_keys: list[str]
) -> dict[str, tuple[int, int | None, str | None]]:
    """For the keys already stored: (message id, case id, quarantine reason)."""
    connection = db
    marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    sql = ("SELECT m.dedupe_key, m.id, m.case_id, q.reason FROM messages m "
           "LEFT OUTER JOIN quarantine q ON q.message_id = m.id "
           f"WHERE m.dedupe_key IN ({', '.join([marker] * len(dedupe_keys))})")
    rows = _run(connection, sql, tuple(dedupe_keys), fetch=True)
    return {str(row[0]): (int(row[1]), row[2], row[3]) for row in rows}


def recent_mail(
    db: Connection, recipients: list[str], kinds: tuple[str, ...], since: dt.datetime
) -> list[tuple[str, str]]:
    """(recipient, kind) of the outbox rows of ``kinds`` to ``recipients`` queued
    after ``since`` (the per-address limit of automatic answers)."""
    marker = "?" if db.dialect.paramstyle == "qmark" else "%s"
    sql = ("SELECT recipient, kind FROM outbox WHERE "
           f"recipient IN ({', '.join([marker] * len(recipients))}) "
           f"AND kind IN ({', '.join([marker] * len(kinds))}) AND created_at > {marker}")
    processor = Outbox.__table__.c.created_at.type.dialect_impl(db.dialect).bind_processor(
        db.dialect)
    moment = processor(since) if processor else since
    rows = _run(db, sql, (*recipients, *kinds, moment), fetch=True)
    return [(str(row[0]), str(row[1])) for row in rows]


def _run(connection: Connection, sql: str, params: Any, fetch: bool = False) -> list[Any]:
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


_compiled_cache: dict[tuple[str, str, tuple[str, ...], bool, bool], _Compiled] = {}


def _compile(dialect: Dialect, table: Any, keys: tuple[str, ...],
             skip_duplicates: bool = False, ids: bool = False) -> _Compiled:
    """The INSERT of ``keys`` into ``table``; with ``ids``, one that gives the new id."""
    cache_key = (dialect.name, table.name, keys, skip_duplicates, ids)
    found = _compiled_cache.get(cache_key)
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
    _compiled_cache[cache_key] = result
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


def _insert_many(db: Connection, table: Any, rows: list[dict[str, Any]]) -> list[int]:
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


def insert_cases(db: Connection, channels: list[str], opened_at: dt.datetime) -> list[int]:
    """One new case for each entry of ``channels`` (how its report reached us)."""
    return _insert_many(db, Case.__table__,
                        [{"state": "new", "channel": channel, "opened_at": opened_at,
                          "escalated_through": 0} for channel in channels])


def insert_participants(db: Connection, rows: list[dict[str, Any]]) -> list[int]:
    # Every row with every column: one statement for a reporter and members alike.
    return _insert_many(db, Participant.__table__, [
        {"name": None, "handle": None, "cleared_at": None, "member_id": None, "left_at": None,
         **r} for r in rows])


def clear(db: Connection, participant_ids: list[int], at: dt.datetime) -> None:
    """Members' seats cleared to read their case (triage, "no-conflict", mediator)."""
    if participant_ids:
        db.execute(update(Participant).where(Participant.id.in_(participant_ids),
                                             Participant.cleared_at.is_(None))
                   .values(cleared_at=at))


def insert_messages(db: Connection, rows: list[dict[str, Any]]) -> list[int]:
    return _insert_many(db, _MESSAGES, rows)


def set_message_case(db: Connection, message_id: int, case_id: int,
                     participant_id: int | None, verified: bool) -> None:
    db.execute(
        update(_MESSAGES).where(_MESSAGES.c.id == message_id).values(  # type: ignore[arg-type]
            case_id=case_id, participant_id=participant_id, verified=verified)
    )


def insert_attachments(db: Connection, rows: list[dict[str, Any]]) -> None:
    _execute_many(db, _ATTACHMENTS, rows)


def insert_events(db: Connection, rows: list[dict[str, Any]]) -> None:
    _execute_many(db, Event.__table__, rows)


def insert_recusals(db: Connection, rows: list[dict[str, Any]]) -> None:
    _execute_many(db, Recusal.__table__, rows)


def insert_quarantines(db: Connection, rows: list[dict[str, Any]]) -> None:
    _execute_many(db, Quarantine.__table__, rows)


def insert_ignoring_duplicates(db: Connection, table: Any, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows``, skipping any whose unique key is already stored (the outbox's
    (case, kind, step, recipient): a mail queued twice is queued once)."""
    _execute_many(db, table, rows, skip_duplicates=True)


def _execute_many(db: Connection, table: Any, rows: list[dict[str, Any]],
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


def insert_once(db: Connection, table: Any, row: dict[str, Any]) -> bool:
    """Insert ``row`` unless a row with its unique key is stored; True when this call
    inserted it. Two transactions racing for the same key: the second waits for the
    first to commit and then inserts nothing (how a sweep takes a hand-off once)."""
    make = postgresql_insert if db.dialect.name == "postgresql" else sqlite_insert
    # RETURNING, not rowcount: psycopg reports -1 for an INSERT SQLAlchemy executes.
    statement = make(table).values(**row).on_conflict_do_nothing().returning(table.c.id)
    return db.execute(statement).first() is not None


def insert_follow_up(db: Connection, row: dict[str, Any]) -> None:
    db.execute(insert(FollowUp).values(**row))


def insert_returning_id(db: Connection, table: Any, row: dict[str, Any]) -> int:
    """Insert one row; its new id."""
    [new_id] = _insert_many(db, table, [row])
    return new_id


def set_recusal(db: Connection, case_id: int, member_id: int, kind: str,
                at: dt.datetime) -> None:
    """Member ``member_id``'s recusal in the case is now ``kind`` (hard, soft, or excl:
    kept out by the reporter)."""
    changed = db.execute(update(Recusal).where(Recusal.case_id == case_id,
                                               Recusal.member_id == member_id)
                         .values(kind=kind, at=at)).rowcount
    if not changed:
        insert_recusals(db, [{"case_id": case_id, "member_id": member_id, "kind": kind,
                              "at": at}])


def keep_out_of_message(db: Connection, message_id: int, member_ids: list[int]) -> None:
    """A message kept from members (``MessageKeepOut``); one already kept is skipped."""
    _execute_many(db, MessageKeepOut.__table__, [
        {"message_id": message_id, "member_id": member_id} for member_id in member_ids],
        skip_duplicates=True)


def keep_out_of_cases(db: Connection, pairs: list[tuple[int, int]], at: dt.datetime) -> None:
    """Members kept out of new cases by their reporter: (case id, member id) pairs."""
    insert_recusals(db, [{"case_id": case_id, "member_id": member_id, "kind": "excl", "at": at}
                         for case_id, member_id in pairs])


def seat_key(member_id: int) -> str:
    """What a member's seat keeps in ``participants.email``: not their address,
    which is the member's (``members.email``) and may change, but a key unique to
    them, so that two members may swap addresses, or one take the address of
    another who left, and each seat stays one member's.

    >>> seat_key(7)
    'member:7'
    """
    return f"member:{member_id}"


def member_seat(case_id: int, member_id: int, handle: str, name: str | None,
                at: dt.datetime, *, cleared: bool) -> dict[str, Any]:
    """The row of a member's seat in a case, cleared to read it or not."""
    return {"case_id": case_id, "role": "member", "email": seat_key(member_id),
            "name": name, "handle": handle, "member_id": member_id, "created_at": at,
            "cleared_at": at if cleared else None}


def seat_cleared(row: dict[str, Any]) -> bool:
    """Is the seat ``member_seat`` made cleared to read?"""
    return row.get("cleared_at") is not None


def seat_again(db: Connection, participant_id: int) -> bool:
    """A member who left the roster and came back: the seat they lost in an open
    case is theirs again, not cleared. True when this call gave it back."""
    return bool(db.execute(update(Participant).where(
        Participant.id == participant_id, Participant.left_at.is_not(None)).values(
        left_at=None, cleared_at=None)).rowcount == 1)


def add_recipients(db: Connection, message_id: int, recipients: list[str]) -> None:
    """A message delivered again to more recipients: it keeps them all (a replay
    of a quarantined message then sees what each means)."""
    known = db.execute(select(Message.recipients).where(Message.id == message_id)).scalar()
    merged = list(dict.fromkeys([*(known or []), *recipients]))
    if merged != known:
        db.execute(update(Message).where(Message.id == message_id).values(recipients=merged))


def set_command_key(db: Connection, message_id: int, key: str) -> None:
    """The key of a member reply's new text, once the reply was carried out."""
    db.execute(update(Message).where(Message.id == message_id).values(command_key=key))


def scrub_after_commit(db: Connection) -> None:
    """This transaction deletes case content: once it commits, the store leaves no
    copy of it in its files (``Store.scrub``)."""
    db.info[SCRUB] = True
