"""Retention: content kept no longer than the committee decided.

``retention.closed_after`` purges the content of a case closed that long ago,
``retention.quarantine_after`` that of a quarantined message no case took
(``case/purge.py`` says what goes). The sweep runs it once a day: the first
sweep of a UTC day records the day in ``retention_runs`` (unique), and only the
transaction that recorded it purges, so restarts and replicas change nothing.
Each purged case gets a ``purged`` event by cocmail. ``cocmail purge --dry-run``
lists what goes and when (``due``), ``cocmail purge`` purges what is due now.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import exists, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from cocmail.case import events
from cocmail.case import purge as purging
from cocmail.case.events import EventKind
from cocmail.config import Config, Retention
from cocmail.notify.enqueue import Enqueue
from cocmail.store import writes
from cocmail.store.models import Case, Event, Message, Quarantine, RetentionRun

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Due:
    what: str  # "case" | "quarantine"
    id: int  # the case's, or the quarantine entry's
    since: dt.datetime  # when the case closed, or the message arrived
    at: dt.datetime  # when its content goes


def due(db: Connection, retention: Retention, now: dt.datetime,
        upcoming: bool = False) -> list[Due]:
    """What retention purges at ``now``, oldest first; with ``upcoming``, also what
    it will purge later (each with when)."""
    found = []
    if retention.closed_after is not None:
        purged = exists().where(Event.case_id == Case.id, Event.kind == EventKind.PURGED)
        cases = select(Case.id, Case.closed_at).where(Case.closed_at.is_not(None), ~purged)
        if not upcoming:
            cases = cases.where(Case.closed_at <= now - retention.closed_after)
        kept = retention.closed_after
        found += [Due("case", case_id, closed, closed + kept)
                  for case_id, closed in db.execute(cases) if closed is not None]
    if retention.quarantine_after is not None:
        held = (select(Quarantine.id, Quarantine.received_at)
                .join(Message, Message.id == Quarantine.message_id)
                .where(Message.case_id.is_(None), Message.raw.is_not(None)))
        if not upcoming:
            held = held.where(Quarantine.received_at <= now - retention.quarantine_after)
        found += [Due("quarantine", entry, received, received + retention.quarantine_after)
                  for entry, received in db.execute(held)]
    return sorted(found, key=lambda d: (d.at, d.what, d.id))


def apply(db: Connection, retention: Retention, now: dt.datetime) -> tuple[int, int]:
    """Purge what is due at ``now``: (cases, quarantined messages) purged."""
    going = due(db, retention, now)
    cases = [d for d in going if d.what == "case"]
    for case in cases:
        purging.purge(db, case.id)
    writes.insert_events(db, [events.row(case.id, now, EventKind.PURGED, {
        "by": "retention", "closed_at": case.since.isoformat()}) for case in cases])
    held = [d.id for d in going if d.what == "quarantine"]
    purging.purge_quarantined(db, held, "content purged by retention", now)
    return len(cases), len(held)


def run_retention(session: Session, config: Config, enqueue: Enqueue, now: dt.datetime) -> int:
    """The sweep's task: retention, at the first sweep of each UTC day. It queues
    no mail (0)."""
    retention = config.retention
    if retention.closed_after is None and retention.quarantine_after is None:
        return 0
    db = session.connection()
    day = now.astimezone(dt.UTC).date().isoformat()
    if not writes.insert_once(db, RetentionRun.__table__, {
            "day": day, "cases": 0, "messages": 0, "created_at": now}):
        return 0  # ran today already (this daemon or another)
    cases, messages = apply(db, retention, now)
    db.execute(update(RetentionRun).where(RetentionRun.day == day).values(
        cases=cases, messages=messages))
    if cases or messages:
        log.info("retention: purged %d case(s) and %d quarantined message(s)", cases, messages)
    return 0
