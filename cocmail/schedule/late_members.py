"""Members who joined the committee after a case was opened: each gets a seat in
every open case they have none in, not cleared, and the conflict check. They
see nothing of the case until they answer ``no-conflict``. Closed cases stay
closed to them. A member the reporter kept out of a case (``without-``) gets
no seat in it.

The seat's unique key (case, role, email) makes a second sweep or a second
daemon a no-op: the notice goes with the seat, in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select
from sqlalchemy.engine import Connection

from cocmail.config import Committee
from cocmail.outbox.enqueue import Enqueue, Seat, conflict_notices
from cocmail.store import writes
from cocmail.store.models import Case, Participant, Recusal

log = logging.getLogger(__name__)


def seat_late_members(db: Connection, committee: Committee, enqueue: Enqueue,
                      now: dt.datetime) -> int:
    """Seat the members missing from open cases; how many notices were queued."""
    members = {m.email.lower(): m for m in committee.members}
    if not members:
        return 0
    open_cases = select(Case.id).where(Case.closed_at.is_(None))
    have = {(case_id, email.lower()) for case_id, email in db.execute(
        select(Participant.case_id, Participant.email).where(
            Participant.role == "member", Participant.case_id.in_(open_cases)))}
    kept_out = {(case_id, handle) for case_id, handle in db.execute(
        select(Recusal.case_id, Recusal.handle).where(
            Recusal.kind == "excl", Recusal.case_id.in_(open_cases)))}
    missing = [(case_id, member) for case_id in db.execute(open_cases).scalars()
               for email, member in members.items()
               if (case_id, email) not in have and (case_id, member.handle) not in kept_out]
    if not missing:
        return 0
    mails = []
    for case_id, member in missing:
        added = writes.insert_once(db, Participant.__table__, {
            "case_id": case_id, "role": "member", "email": member.email, "name": member.name,
            "handle": member.handle, "created_at": now, "cleared_at": None})
        if not added:
            continue  # another daemon seated them first
        pid = db.execute(select(Participant.id).where(
            Participant.case_id == case_id, Participant.role == "member",
            Participant.email == member.email)).scalar_one()
        writes.insert_events(db, [{"case_id": case_id, "at": now, "kind": "member-seated",
                                   "actor": "cocmail", "message_id": None,
                                   "data": {"member": member.handle}}])
        mails += conflict_notices(case_id, [Seat(pid, member.email, member.handle, False)],
                                  "late", late=True)
        log.info("case #%d: %s joined the committee since; conflict check sent",
                 case_id, member.handle)
    enqueue.queue(db, mails, now)
    return len(mails)
