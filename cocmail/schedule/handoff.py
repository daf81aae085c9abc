"""Hand-offs: when triage duty changes hands, the outgoing and the incoming
members get one mail with the open cases still waiting for an acknowledgement
(the ones past their first-response time marked so).

A hand-off is any instant the pair on duty changes: the weekly hand-off, and
the start and end of an override. The sweep looks back one day for such
instants (a daemon that was down over a hand-off still sends it when it comes
back) and records each in the ``handoffs`` table, unique by instant; only the
transaction that inserted the row queues the mails and writes the events, so
two daemons send it once. Each listed case gets a ``handed-off`` event: its
history says who was on duty when.

The mail carries case numbers, ages and states; which cases a member sees in it
is decided when it is sent (``case/access.py``).
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from cocmail.case import events, members
from cocmail.case.events import EventKind
from cocmail.config import Config
from cocmail.notify import payloads
from cocmail.notify.enqueue import Enqueue, Mail
from cocmail.notify.kinds import HANDOFF
from cocmail.schedule.roster import load_schedule
from cocmail.schedule.rotation import Schedule
from cocmail.store import writes
from cocmail.store.models import Case, Handoff

log = logging.getLogger(__name__)

LOOKBACK = dt.timedelta(days=1)


def queue_handoffs(session: Session, config: Config, enqueue: Enqueue, now: dt.datetime) -> int:
    """Queue the mail of every hand-off in the last day that has none yet; how many
    mails were queued."""
    if not config.rotation.handoff_mail or len(config.rotation.order) < 2:
        return 0
    since = now - LOOKBACK
    schedule = load_schedule(session, config, since)
    shifts = schedule.shifts(since, now + dt.timedelta(seconds=1))
    db = session.connection()
    queued = 0
    for before, after in itertools.pairwise(shifts):
        if after.start > now:
            break
        queued += _hand_off(db, config, enqueue, schedule, before.on_duty, after.on_duty,
                            after.start, now)
    return queued


def _hand_off(db: Connection, config: Config, enqueue: Enqueue, schedule: Schedule,
              outgoing: tuple[str, ...], incoming: tuple[str, ...], at: dt.datetime,
              now: dt.datetime) -> int:
    if not writes.insert_once(db, Handoff.__table__, {
            "at": at, "outgoing": list(outgoing), "incoming": list(incoming),
            "created_at": now}):
        return 0  # queued before (by this daemon or another)
    until = schedule.shifts(at, at + dt.timedelta(days=15))[0].end
    waiting = db.execute(
        select(Case.id).where(Case.acknowledged_at.is_(None), Case.closed_at.is_(None))
        .order_by(Case.id)).scalars().all()
    handed = {"outgoing": list(outgoing), "incoming": list(incoming), "at": at.isoformat()}
    writes.insert_events(db, [events.row(case_id, now, EventKind.HANDED_OFF, handed)
                              for case_id in waiting])
    mails = []
    roster = {m.handle: m for m in members.roster(db)}
    for handle in dict.fromkeys([*incoming, *outgoing]):
        member = roster.get(handle)
        if member is not None:
            mails.append(Mail(HANDOFF, member.email, step=at.isoformat(),
                              payload=payloads.Handoff(handle, at, until, list(incoming),
                                                       list(outgoing), list(waiting))))
    enqueue.queue(db, mails, now)
    log.info("hand-off at %s: %s -> %s, %d case(s) waiting", at.isoformat(),
             "+".join(outgoing), "+".join(incoming), len(waiting))
    return len(mails)
