"""``purge``: delete what the case's messages said, for good; two members must ask.

The first ``purge`` is recorded and the other members are told; a ``purge`` from
a second member within 7 days carries it out (``purge``): every message of the
case loses its raw bytes, headers, subject and text, its attachments' records
go, the mail still to go is not sent and what was queued from the case loses
its text, follow-ups lose what they said, and the history keeps its events
without their free text (reasons, vote details). Nothing the purging reply
carries goes out either (its note, a relay in it). What stays is the metadata
(who, when, sizes, hashes) and the shape of the history. On SQLite the freed
pages are zeroed and the write-ahead log emptied after the commit
(``Store.scrub``), so no byte of the purged text stays in the files.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, or_, select, update
from sqlalchemy.engine import Connection

from cocmail.case import members
from cocmail.case.events import EventKind
from cocmail.commands.base import Request, Result
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

WINDOW = dt.timedelta(days=7)
# The event data a purge clears: what members wrote in their own words (an
# emergency measure's action is a word of the member's own, too).
FREE_TEXT = ("reason", "details", "what")
EMERGENCY_EVENTS = (EventKind.EMERGENCY, EventKind.EMERGENCY_CONFIRMED,
                    EventKind.EMERGENCY_REVERSED, EventKind.ESCALATED)


class Purge:
    name = "purge"
    usage = "purge"
    summary = "delete the case's message bodies and attachments (a second member must agree)"

    def run(self, request: Request, args: list[str]) -> Result:
        db, case_id = request.db, request.case_id
        if db.execute(select(Event.id).where(Event.case_id == case_id,
                                             Event.kind == EventKind.PURGED)).first():
            return Result(True, f"Case #{case_id} was purged already.")
        now_handle = members.current_handles(db)
        asked = [now_handle.get(actor, actor) for actor in db.execute(select(Event.actor).where(
            Event.case_id == case_id, Event.kind == EventKind.PURGE_REQUESTED,
            Event.at >= request.now - WINDOW)).scalars()]
        others = [actor for actor in asked if actor != request.handle]
        if not others:
            if asked:
                return Result(False, "You asked for the purge already: a second member must "
                                     "reply \"purge\" within 7 days of it.")
            request.event(EventKind.PURGE_REQUESTED)
            return Result(True, f"Noted. Case #{case_id} is purged when a second member "
                                "replies \"purge\" within 7 days; the others are told.")
        purge(db, case_id)
        request.event(EventKind.PURGED, agreed_with=others[0])
        return Result(True, f"Case #{case_id} is purged: its messages' text, raw bytes and "
                            "attachments are deleted; the history stays.")


def purge(db: Connection, case_id: int) -> None:
    """Delete the content of case ``case_id``: its messages' (those a quarantine
    entry claims for it included), the mail queued from them, its follow-ups'
    and emergency measures' text, and the free text of its events."""
    messages = select(Message.id).where(or_(
        Message.case_id == case_id,
        Message.id.in_(select(Quarantine.message_id).where(
            Quarantine.claimed_case_id == case_id))))
    db.execute(delete(Attachment).where(Attachment.message_id.in_(messages)))
    db.execute(update(Message).where(Message.id.in_(messages)).values(
        raw=None, headers=None, subject=None, text=None, html=None))
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
        keys = [*FREE_TEXT, *(("action",) if kind in EMERGENCY_EVENTS else ())]
        if any(data.get(key) for key in keys):
            db.execute(update(Event).where(Event.id == event_id).values(
                data={**data, **{key: None for key in keys if key in data}}))
    writes.scrub_after_commit(db)


COMMAND = Purge()
