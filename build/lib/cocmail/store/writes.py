"""The inserts on the intake's hot path, as plain SQL expressions.

Accepting a message writes four or five rows; through the ORM's unit of work
that cost more than parsing the message. These functions insert with Core
statements on the session's connection, inside the caller's transaction, and
return the new ids. They take plain values: the store still knows no mail.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from cocmail.store.models import Attachment, Case, Event, Message, Participant, Quarantine

_MESSAGES = Message.__table__
_ATTACHMENTS = Attachment.__table__


def _insert(session: Session, table: Any, values: Mapping[str, Any]) -> int:
    result = session.connection().execute(insert(table), [dict(values)])
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


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


def insert_case(session: Session, opened_at: dt.datetime, channel: str = "email") -> int:
    return _insert(session, Case.__table__,
                   {"state": "new", "channel": channel, "opened_at": opened_at})


def insert_participant(session: Session, case_id: int, role: str, email: str,
                       name: str | None, created_at: dt.datetime,
                       handle: str | None = None) -> int:
    return _insert(session, Participant.__table__, {
        "case_id": case_id, "role": role, "email": email, "name": name, "handle": handle,
        "created_at": created_at,
    })


def insert_message(session: Session, values: Mapping[str, Any]) -> int:
    return _insert(session, Message.__table__, values)


def set_message_case(session: Session, message_id: int, case_id: int,
                     participant_id: int | None, verified: bool) -> None:
    session.connection().execute(
        update(_MESSAGES).where(_MESSAGES.c.id == message_id).values(  # type: ignore[arg-type]
            case_id=case_id, participant_id=participant_id, verified=verified)
    )


def insert_attachments(session: Session, message_id: int,
                       rows: Iterable[Mapping[str, Any]]) -> None:
    values = [{**row, "message_id": message_id} for row in rows]
    if values:
        session.connection().execute(insert(_ATTACHMENTS), values)  # type: ignore[arg-type]


def insert_event(session: Session, case_id: int, at: dt.datetime, kind: str, actor: str,
                 message_id: int | None, data: Mapping[str, Any]) -> int:
    return _insert(session, Event.__table__, {
        "case_id": case_id, "at": at, "kind": kind, "actor": actor,
        "message_id": message_id, "data": dict(data),
    })


def insert_quarantine(session: Session, message_id: int, reason: str, detail: str,
                      claimed_case_id: int | None, received_at: dt.datetime) -> int:
    return _insert(session, Quarantine.__table__, {
        "message_id": message_id, "reason": reason, "detail": detail,
        "claimed_case_id": claimed_case_id, "received_at": received_at,
    })
