"""Members who joined the committee after a case was opened, or came back to it:
each gets a seat in every open case they have none in, not cleared, and the
conflict check. They see nothing of the case until they answer
``no-conflict``. Closed cases stay closed to them. A member the reporter kept
out of a case (``without-``) gets no seat in it; which seats are missing is
``case/access.py``'s to say.

The seat's unique key (case, role, and the member's key, ``writes.seat_key``)
makes a second sweep or a second daemon a no-op: the notice goes with the seat,
in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select
from sqlalchemy.engine import Connection

from cocmail.case import access, events, members
from cocmail.case.access import Seat, Standing
from cocmail.case.events import EventKind
from cocmail.config import Committee
from cocmail.notify import payloads
from cocmail.notify.enqueue import Enqueue, conflict_notices
from cocmail.store import writes
from cocmail.store.models import Participant

log = logging.getLogger(__name__)


def seat_late_members(db: Connection, committee: Committee, enqueue: Enqueue,
                      now: dt.datetime) -> int:
    """Seat the members missing from open cases; how many notices were queued."""
    roster = {m.id: m for m in members.roster(db) if not m.is_mediator}
    missing = access.unseated(db, list(roster))
    if not missing:
        return 0
    mails = []
    for case_id, member_id, lost in missing:
        member = roster[member_id]
        if lost is not None:
            # Back on the roster: the seat again, and the conflict check again.
            pid: int | None = lost if writes.seat_again(db, lost) else None
        else:
            added = writes.insert_seat_once(db, writes.member_seat(
                case_id, member_id, member.handle, member.name, now, cleared=False))
            pid = db.execute(select(Participant.id).where(
                Participant.case_id == case_id, Participant.role == access.MEMBER_ROLE,
                Participant.member_id == member_id)).scalar_one() if added else None
        if pid is None:
            continue  # another daemon seated them first
        writes.insert_events(db, [events.row(case_id, now, EventKind.MEMBER_SEATED,
                                              {"member": member.handle})])
        mails += conflict_notices(
            case_id, [Seat(pid, member_id, member.handle, member.email, Standing.PENDING)],
            "late" if lost is None else f"back:{now.isoformat()}",
            payloads.Conflict(late=True))
        log.info("case #%d: %s joined the committee since; conflict check sent",
                 case_id, member.handle)
    enqueue.queue(db, mails, now)
    return len(mails)
