"""The writes of the intake, the commands and the sweep: cases, seats, messages,
events, recusals, keep-outs. Plain values in and out (the store still knows no
mail); the rows of the intake's hot path go in through ``store/bulk.py``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from cocmail.store import bulk, chain, keyring
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
)

_MESSAGES = Message.__table__
_ATTACHMENTS = Attachment.__table__


def find_messages(
    db: Connection, dedupe_keys: list[str]
) -> dict[str, tuple[int, int | None, str | None]]:
    """For the keys already stored: (message id, case id, quarantine reason)."""
    connection = db
    stored = {keyring.keyed(db, key): key for key in dedupe_keys}
    marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    sql = ("SELECT m.dedupe_key, m.id, m.case_id, q.reason FROM messages m "
           "LEFT OUTER JOIN quarantine q ON q.message_id = m.id "
           f"WHERE m.dedupe_key IN ({', '.join([marker] * len(stored))})")
    rows = bulk.run(connection, sql, tuple(stored), fetch=True)
    return {stored[str(row[0])]: (int(row[1]), row[2], row[3]) for row in rows}


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
    rows = bulk.run(db, sql, (*recipients, *kinds, moment), fetch=True)
    return [(str(row[0]), str(row[1])) for row in rows]


def insert_cases(db: Connection, channels: list[str], opened_at: dt.datetime) -> list[int]:
    """One new case for each entry of ``channels`` (how its report reached us)."""
    return bulk.insert_many(db, Case.__table__,
                        [{"state": "new", "channel": channel, "opened_at": opened_at,
                          "escalated_through": 0, "head_seq": 0} for channel in channels])


def insert_participants(db: Connection, rows: list[dict[str, Any]]) -> list[int]:
    # Every row with every column: one statement for a reporter and members alike.
    return bulk.insert_many(db, Participant.__table__, [
        {"name": None, "handle": None, "cleared_at": None, "member_id": None, "left_at": None,
         **r} for r in rows])


def clear(db: Connection, participant_ids: list[int], at: dt.datetime) -> None:
    """Members' seats cleared to read their case (triage, "no-conflict", mediator)."""
    if participant_ids:
        db.execute(update(Participant).where(Participant.id.in_(participant_ids),
                                             Participant.cleared_at.is_(None))
                   .values(cleared_at=at))


def insert_messages(db: Connection, rows: list[dict[str, Any]]) -> list[int]:
    """New messages; their content hashes are stored keyed (``keyring.keyed``)."""
    for row in rows:
        for column in ("dedupe_key", "raw_sha256"):
            if row.get(column) is not None:
                row[column] = keyring.keyed(db, row[column])
    return bulk.insert_many(db, _MESSAGES, rows)


def set_message_case(db: Connection, message_id: int, case_id: int,
                     participant_id: int | None, verified: bool) -> None:
    db.execute(
        update(_MESSAGES).where(_MESSAGES.c.id == message_id).values(  # type: ignore[arg-type]
            case_id=case_id, participant_id=participant_id, verified=verified)
    )


def insert_attachments(db: Connection, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        row["sha256"] = keyring.keyed(db, row["sha256"])
    bulk.execute_many(db, _ATTACHMENTS, rows)


def insert_events(db: Connection, rows: list[dict[str, Any]]) -> None:
    """The one way an event is written: as the next links of its case's chain."""
    chain.extend(db, rows)
    bulk.execute_many(db, Event.__table__, rows)


def insert_recusals(db: Connection, rows: list[dict[str, Any]]) -> None:
    bulk.execute_many(db, Recusal.__table__, rows)


def insert_quarantines(db: Connection, rows: list[dict[str, Any]]) -> None:
    bulk.execute_many(db, Quarantine.__table__, rows)


def insert_ignoring_duplicates(db: Connection, table: Any, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows``, skipping any whose unique key is already stored (the outbox's
    (case, kind, step, recipient): a mail queued twice is queued once)."""
    bulk.execute_many(db, table, rows, skip_duplicates=True)


def insert_once(db: Connection, table: Any, row: dict[str, Any]) -> bool:
    """Insert ``row`` unless a row with its unique key is stored; True when this call
    inserted it. Two transactions racing for the same key: the second waits for the
    first to commit and then inserts nothing (how a sweep takes a hand-off once)."""
    make = postgresql_insert if db.dialect.name == "postgresql" else sqlite_insert
    # RETURNING, not rowcount: psycopg reports -1 for an INSERT SQLAlchemy executes.
    statement = make(table).values(**row).on_conflict_do_nothing().returning(
        *table.primary_key.columns)
    return db.execute(statement).first() is not None


def insert_follow_up(db: Connection, row: dict[str, Any]) -> None:
    db.execute(insert(FollowUp).values(**row))


def insert_returning_id(db: Connection, table: Any, row: dict[str, Any]) -> int:
    """Insert one row; its new id."""
    [new_id] = bulk.insert_many(db, table, [row])
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
    bulk.execute_many(db, MessageKeepOut.__table__, [
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
    db.execute(update(Message).where(Message.id == message_id).values(
        command_key=keyring.keyed(db, key)))


def scrub_after_commit(db: Connection) -> None:
    """This transaction deletes case content: once it commits, the store leaves no
    copy of it in its files (``Store.scrub``)."""
    db.info[SCRUB] = True
