"""``purge``: delete what the case's messages said, for good; two members must ask.

The first ``purge`` is recorded and the other members are told; a ``purge`` from
a second member within 7 days carries it out (``case/purge.py`` says what
goes). Nothing the purging reply carries goes out either (its note, a relay in
it).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from cocmail.case import members
from cocmail.case import purge as purging
from cocmail.case.events import EventKind
from cocmail.commands.base import Request, Result
from cocmail.store.models import Event

WINDOW = dt.timedelta(days=7)


class Purge:
    name = "purge"
    usage = "purge"
    summary = "delete the case's message bodies and attachments (a second member must agree)"

    def run(self, request: Request, args: list[str]) -> Result:
        db, case_id = request.db, request.case_id
        if purging.is_purged(db, case_id):
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
        purging.purge(db, case_id)
        request.event(EventKind.PURGED, agreed_with=others[0])
        return Result(True, f"Case #{case_id} is purged: its messages' text, raw bytes and "
                            "attachments are deleted; the history stays.")


COMMAND = Purge()
