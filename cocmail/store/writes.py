"""The inserts on the intake's hot path, as plain SQL expressions.

Accepting a message writes four or five rows; through the ORM's unit of work
that cost more than parsing the message. These functions insert with Core
statements on the session's connection, inside the caller's transaction, and
return the new ids. They take plain values: the store still knows no mail.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from cocmail.store.models import Attachment, Case, Event, Message, Participant, Quarantine

_MESSAGES = Message.__table__
_ATTACHMENTS = Attachment.__table__


def find_messages(
    session: Session, dedupe_keys: list[str]
) -> dict[str, tuple[int, int | None, str | None]]:
    """For the keys already stored: (message id, case id, quarantine reason)."""
    rows = session.connection().execute(
        select(Message.dedupe_key, Message.id, Message.case_id, Quarantine.reason)
        .outerjoin(Quarantine, Quarantine.message_id == Message.id)
        .where(Message.dedupe_key.in_(dedupe_keys))
    ).all()
    return {str(row[0]): (row[1], row[2], row[3]) for row in rows}


def _insert_many(session: Session, table: Any, rows: list[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` with one statement; their new ids, in the order given."""
    if not rows:
        return []
    result = session.connection().execute(
        insert(table).returning(table.c.id, sort_by_parameter_order=True), rows)
    return [int(row[0]) for row in result]


def insert_cases(session: Session, count: int, opened_at: dt.datetime,
                 channel: str = "email") -> list[int]:
    return _insert_many(session, Case.__table__,
                        [{"state": "new", "channel": channel, "opened_at": opened_at}] * count)


def insert_participants(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    return _insert_many(session, Participant.__table__, [{"handle": None, **r} for r in rows])


def insert_messages(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    return _insert_many(session, _MESSAGES, rows)


def set_message_case(session: Session, message_id: int, case_id: int,
                     participant_id: int | None, verified: bool) -> None:
    session.connection().execute(
        update(_MESSAGES).where(_MESSAGES.c.id == message_id).values(  # type: ignore[arg-type]
            case_id=case_id, participant_id=participant_id, verified=verified)
    )


def insert_attachments(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        session.connection().execute(insert(_ATTACHMENTS), rows)  # type: ignore[arg-type]


def insert_events(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        session.connection().execute(insert(Event.__table__), rows)  # type: ignore[arg-type]


def insert_quarantines(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        session.connection().execute(insert(Quarantine.__table__), rows)  # type: ignore[arg-type]
