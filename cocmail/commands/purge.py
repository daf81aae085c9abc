"""``purge``: delete what the case's messages said, for good; two members must ask.

The first ``purge`` is recorded and the other members are told; a ``purge`` from
a second member within 7 days carries it out: every message of the case loses
its raw bytes, headers, subject and text, its attachments' records go, and the
text cocmail queued for members from them (notes) is cleared from the outbox.
What stays is the metadata (who, when, sizes, hashes) and the history.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, or_, select, update
from sqlalchemy.engine import Connection

from cocmail.commands.base import Request, Result
from cocmail.store.models import Attachment, Event, Message, Outbox, Quarantine

WINDOW = dt.timedelta(days=7)


class Purge:
    name = "purge"
    usage = "purge"
    summary = "delete the case's message bodies and attachments (a second member must agree)"

    def run(self, request: Request, args: list[str]) -> Result:
        db, case_id = request.db, request.case_id
        if db.execute(select(Event.id).where(Event.case_id == case_id,
                                             Event.kind == "purged")).first():
            return Result(True, f"Case #{case_id} was purged already.")
        asked = db.execute(select(Event.actor).where(
            Event.case_id == case_id, Event.kind == "purge-requested",
            Event.at >= request.now - WINDOW)).scalars().all()
        others = [actor for actor in asked if actor != request.handle]
        if not others:
            if asked:
                return Result(False, "You asked for the purge already: a second member must "
                                     "reply \"purge\" within 7 days of it.")
            request.event("purge-requested")
            return Result(True, f"Noted. Case #{case_id} is purged when a second member "
                                "replies \"purge\" within 7 days; the others are told.")
        purge(db, case_id)
        request.event("purged", agreed_with=others[0])
        return Result(True, f"Case #{case_id} is purged: its messages' text, raw bytes and "
                            "attachments are deleted; the history stays.")


def purge(db: Connection, case_id: int) -> None:
    """Delete the content of case ``case_id``'s messages (those a quarantine entry
    claims for it included) and of the mail queued from them."""
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


COMMAND = Purge()
