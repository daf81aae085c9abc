"""Emergency measures nobody answered: an ``emergency`` a member took that the
committee has not confirmed or reversed by its due time is escalated, once, to
every member of the case: an urgent page to those who can see it, an urgent
conflict check to those who have not answered theirs.

Like the reminders, each is claimed with a compare-and-set on ``escalated_at``
in the transaction that queues its mails, so it is escalated once across
restarts and replicas.
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
from cocmail.notify.enqueue import Enqueue, Mail, conflict_notices
from cocmail.schedule.escalation import urgent_mails
from cocmail.store import writes
from cocmail.store.models import Emergency

log = logging.getLogger(__name__)

STEP = "emergency"  # the escalation mail's step


def escalate_emergencies(db: Connection, enqueue: Enqueue, now: dt.datetime) -> int:
    """Escalate the measures overdue at ``now``; how many mails were queued."""
    due = db.execute(select(Emergency.id, Emergency.case_id, Emergency.action, Emergency.by,
                            Emergency.at, Emergency.message_id).where(
        Emergency.resolved_at.is_(None), Emergency.escalated_at.is_(None),
        Emergency.due_at <= now).order_by(Emergency.due_at, Emergency.id)).all()
    if not due:
        return 0
    cases = [e.case_id for e in due]
    facts = access.load(db, cases)
    kept = access.kept_out_of(db, [e.message_id for e in due if e.message_id is not None])
    roots = enqueue.thread_roots(db, cases)
    mails: list[Mail] = []
    events = []
    for measure in due:
        claimed = db.execute(update(Emergency).where(
            Emergency.id == measure.id, Emergency.resolved_at.is_(None),
            Emergency.escalated_at.is_(None)).values(escalated_at=now)).rowcount
        if claimed != 1:
            continue
        # Not to a member the reply that took it was kept from.
        case_seats = [s for s in access.notified(facts[measure.case_id].seats)
                      if s.member_id not in kept.get(measure.message_id or 0, set())]
        readers = access.readers(case_seats)
        handles = [s.handle for s in case_seats]
        events.append(case_events.row(measure.case_id, now, EventKind.ESCALATED, {
            "step": STEP, "members": handles, "by": measure.by, "action": measure.action}))
        mails += urgent_mails(measure.case_id, readers, roots, f"{STEP}:{measure.id}",
                              payloads.Escalation(
                                  STEP, waited=int((now - measure.at).total_seconds()),
                                  paged=handles, by=measure.by, action=measure.action),
                              source_message_id=measure.message_id)
        mails += conflict_notices(measure.case_id, case_seats, f"{STEP}:{measure.id}",
                                  payloads.Conflict(emergency=measure.action))
        log.warning("case #%d: emergency measure %s neither confirmed nor reversed",
                    measure.case_id, measure.id)
    writes.insert_events(db, events)
    enqueue.queue(db, mails, now)
    return len(mails)
