"""What a purge deletes, for good: the content of a case, or of a quarantined
message nobody claimed. Two ways lead here: the ``purge`` command (two members
ask, ``commands/purge.py``) and retention (``schedule/retention.py``).

Every message of the case (and those a quarantine entry claims for it) loses
its raw bytes, headers, subject, text and HTML, its attachments' records go,
the mail still to go is not sent and what was queued from the case loses its
text, follow-ups and emergency measures lose what they said, and the history
keeps its events without their free text (reasons, vote details; the chain
keeps their digests, ``store/chain.py``). What stays is the metadata (who,
when, sizes) and the shape of the history. On SQLite the freed pages are
zeroed and the write-ahead log emptied after the commit (``Store.scrub``), so
no byte of the purged text stays in the files.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Select, delete, or_, select, update
from sqlalchemy.engine import Connection

from cocmail.case.events import EventKind
from cocmail.store import writes
from cocmail.store.models import (
    Attachment,
    Emergency,
    Event,
    FollowUp,
    Message,
    Outbox,
    Quarantine,
)

# The event data a purge clears: what members wrote in their own words (an
# emergency measure's action is a word of the member's own, too).
FREE_TEXT = ("reason", "details", "what")
EMERGENCY_EVENTS = (EventKind.EMERGENCY, EventKind.EMERGENCY_CONFIRMED,
                    EventKind.EMERGENCY_REVERSED, EventKind.ESCALATED)
# What a message keeps of its content after a purge: nothing.
_NO_CONTENT = {"raw": None, "headers": None, "subject": None, "text": None, "html": None}


def is_purged(db: Connection, case_id: int) -> bool:
    return db.execute(select(Event.id).where(Event.case_id == case_id,
                                             Event.kind == EventKind.PURGED)).first() is not None


def cleared_keys(kind: str) -> tuple[str, ...]:
    """The values of an event of ``kind`` a purge clears (the history's chain
    accepts them gone in a purged case, and nothing else gone)."""
    return (*FREE_TEXT, *(("action",) if kind in EMERGENCY_EVENTS else ()))


def purge(db: Connection, case_id: int) -> None:
    """Delete the content of case ``case_id``: its messages' (those a quarantine
    entry claims for it included), the mail queued from them, its follow-ups'
    and emergency measures' text, and the free text of its events."""
    messages = select(Message.id).where(or_(
        Message.case_id == case_id,
        Message.id.in_(select(Quarantine.message_id).where(
            Quarantine.claimed_case_id == case_id))))
    _delete_content(db, messages)
    # Mail not sent yet would carry what was just deleted: it is not sent.
    # Queued mail, and relays still held for approval: nothing of the case goes out.
    db.execute(update(Outbox).where(Outbox.case_id == case_id,
                                    Outbox.status.in_(("queued", "held")))
               .values(status="cancelled", last_error="the case was purged"))
    db.execute(update(Outbox).where(Outbox.case_id == case_id).values(data={}))
    db.execute(update(FollowUp).where(FollowUp.case_id == case_id).values(what=""))
    db.execute(update(Emergency).where(Emergency.case_id == case_id).values(
        reason=None, action="(purged)"))
    for event_id, kind, data in db.execute(select(Event.id, Event.kind, Event.data).where(
            Event.case_id == case_id)).all():
        keys = cleared_keys(kind)
        if any(data.get(key) for key in keys):
            db.execute(update(Event).where(Event.id == event_id).values(
                data={**data, **{key: None for key in keys if key in data}}))
    writes.scrub_after_commit(db)



def purge_quarantined(db: Connection, entry_ids: list[int], resolution: str,
                      now: dt.datetime) -> None:
    """Delete the content of the messages of quarantine entries ``entry_ids`` (that
    no case claims), and release the entries with ``resolution``."""
    if not entry_ids:
        return
    messages = select(Quarantine.message_id).where(Quarantine.id.in_(entry_ids))
    _delete_content(db, messages)
    db.execute(update(Quarantine).where(Quarantine.id.in_(entry_ids),
                                        Quarantine.released_at.is_(None))
               .values(released_at=now, resolution=resolution))
    writes.scrub_after_commit(db)


def _delete_content(db: Connection, messages: Select[int]) -> None:
    db.execute(delete(Attachment).where(Attachment.message_id.in_(messages)))
    db.execute(update(Message).where(Message.id.in_(messages)).values(**_NO_CONTENT))
