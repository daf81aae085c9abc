"""Follow-up reminders: each ``follow-up`` a member set comes back, once, as a
mail to the members who can see the case, when it is due.

The sweep reads the follow-ups not yet reminded whose time has come (an index
on reminded_at, due_at) and marks each reminded with a compare-and-set in the
same transaction as its mails and its event, so a restart or a second daemon
sends it once. Closed cases get their reminders too: a ban's end comes after
the decision.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from cocmail.case import access
from cocmail.case import events as case_events
from cocmail.case.events import EventKind
from cocmail.notify import payloads
from cocmail.notify.enqueue import Enqueue, Mail
from cocmail.notify.kinds import REMINDER
from cocmail.store import writes
from cocmail.store.models import FollowUp

log = logging.getLogger(__name__)


def queue_reminders(db: Connection, enqueue: Enqueue, now: dt.datetime) -> int:
    """Queue the reminders due at ``now``; how many mails were queued."""
    due = db.execute(select(FollowUp.id, FollowUp.case_id, FollowUp.what, FollowUp.by,
                            FollowUp.due_at, FollowUp.message_id)
                     .where(FollowUp.reminded_at.is_(None), FollowUp.due_at <= now)
                     .order_by(FollowUp.due_at, FollowUp.id)).all()
    if not due:
        return 0
    facts = access.load(db, [f.case_id for f in due])
    kept = access.kept_out_of(db, [f.message_id for f in due if f.message_id is not None])
    roots = enqueue.thread_roots(db, [f.case_id for f in due])
    mails, events = [], []
    for follow_up in due:
        claimed = db.execute(update(FollowUp).where(
            FollowUp.id == follow_up.id, FollowUp.reminded_at.is_(None))
            .values(reminded_at=now)).rowcount
        if claimed != 1:
            continue  # another daemon took it
        # Not to a member the reply that set it was kept from.
        readers = access.readers(facts[follow_up.case_id].seats,
                                 kept.get(follow_up.message_id or 0, set()))
        handles = [s.handle for s in readers]
        events.append(case_events.row(follow_up.case_id, now, EventKind.FOLLOW_UP_DUE,
                                      {"follow_up": follow_up.id, "members": handles}))
        mails += [Mail(REMINDER, seat.email, follow_up.case_id, step=str(follow_up.id),
                       participant_id=seat.participant_id,
                       source_message_id=follow_up.message_id,
                       in_reply_to=roots.get(seat.participant_id),
                       references=roots.get(seat.participant_id),
                       payload=payloads.Reminder(follow_up.what, follow_up.by,
                                                 follow_up.due_at))
                  for seat in readers]
        log.info("case #%d: follow-up %d is due", follow_up.case_id, follow_up.id)
    writes.insert_events(db, events)
    enqueue.queue(db, mails, now)
    return len(mails)
