"""The first-response SLA and its escalation, worked out from the store.

A case that nobody has acknowledged climbs a ladder of steps from the config
(``sla.escalation``): after 4 hours the members on duty are paged again, after
a day the whole committee, after two days the chair; the first-response
deadline (``sla.first_response``) is a step too, recorded in the history. No
timer is kept anywhere but in the store: each sweep reads the cases still
waiting (``acknowledged_at`` and ``closed_at`` empty: an index look-up, so the
cost follows the open cases, not all of them) and takes the steps that are due.

How far a case has escalated is its ``escalated_through``: the largest
``after`` (in seconds) of the steps taken. A sweep moves it forward with a
compare-and-set in the same transaction as the step's mails and events, so a
step is taken once: after a restart, a late tick, or by one of two daemons on
the same database (the other one's update finds the value changed and takes
nothing). Steps are named by their ``after``, so a step added to the config
later fires for the cases that have not passed it.

``ack`` stops the ladder (the case is no longer waiting). ``severity critical``
pages every member who may see the case at once, asking for an urgent meeting.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from cocmail.case import access, members
from cocmail.case import events as case_events
from cocmail.case.access import Seat, Standing
from cocmail.case.events import EventKind
from cocmail.config import Config, Member, member_of
from cocmail.notify import payloads
from cocmail.notify.enqueue import Enqueue, Mail, conflict_notices
from cocmail.notify.kinds import ESCALATION
from cocmail.schedule.roster import on_call
from cocmail.store import writes
from cocmail.store.models import Case, Event

log = logging.getLogger(__name__)

SLA = "sla"  # the first-response deadline, as a step: recorded, no mail
CRITICAL = "critical"  # the step ``severity critical`` takes at once
# Events that say whom cocmail paged about a case.
PAGING_EVENTS = (EventKind.PAGED, EventKind.ESCALATED)


@dataclass(frozen=True)
class Step:
    after: dt.timedelta
    notify: str  # on-duty | committee | chair | sla

    @property
    def seconds(self) -> int:
        return int(self.after.total_seconds())

    @property
    def name(self) -> str:
        """The step's part of its mails' keys: ``on-duty@14400``."""
        return f"{self.notify}@{self.seconds}"


def ladder(config: Config) -> list[Step]:
    """The steps a waiting case climbs, in order; the deadline after the page that
    falls at the same moment."""
    steps = [Step(s.after, s.notify) for s in config.sla.escalation]
    steps.append(Step(config.sla.first_response, SLA))
    return sorted(steps, key=lambda s: (s.after, s.notify == SLA))


def escalate(db: Connection, config: Config, enqueue: Enqueue, now: dt.datetime) -> int:
    """Take every step due at ``now`` that no sweep has taken; how many mails it queued."""
    steps = ladder(config)
    earliest = steps[0].after
    waiting = db.execute(
        select(Case.id, Case.opened_at, Case.escalated_through, Case.severity)
        .where(Case.acknowledged_at.is_(None), Case.closed_at.is_(None),
               Case.opened_at <= now - earliest)
        .order_by(Case.id)).all()
    due: dict[int, tuple[Any, list[Step]]] = {}
    for case in waiting:
        todo = [s for s in steps
                if s.seconds > case.escalated_through and case.opened_at + s.after <= now]
        if todo:
            due[case.id] = (case, todo)
    if not due:
        return 0
    facts = access.load(db, due)
    roots = enqueue.thread_roots(db, due)
    mails: list[Mail] = []
    events: list[dict[str, Any]] = []
    for case_id, (case, todo) in due.items():
        # Ours only if nobody moved it since we read it (another daemon, an ack).
        claimed = db.execute(
            update(Case).where(Case.id == case_id,
                               Case.escalated_through == case.escalated_through,
                               Case.acknowledged_at.is_(None), Case.closed_at.is_(None))
            .values(escalated_through=max(s.seconds for s in todo))).rowcount
        if claimed != 1:
            continue
        for step in todo:
            event, step_mails = _take(db, config, enqueue, case_id, case.opened_at, step,
                                      list(facts[case_id].seats), roots, now)
            events.append(event)
            mails += step_mails
    writes.insert_events(db, events)
    enqueue.queue(db, mails, now)
    return len(mails)


def _take(db: Connection, config: Config, enqueue: Enqueue, case_id: int,
          opened_at: dt.datetime, step: Step, seats: list[Seat], roots: dict[int, str],
          now: dt.datetime) -> tuple[dict[str, Any], list[Mail]]:
    """One step for one case: its event and its mails."""
    due_at = opened_at + step.after
    data: dict[str, Any] = {"step": step.notify, "after": step.seconds,
                            "due_at": due_at.isoformat()}
    if step.notify == SLA:
        log.warning("case #%d: first-response deadline passed without an ack", case_id)
        return case_events.row(case_id, now, EventKind.SLA_MISSED, data), []
    # Who may hear of the case at all: those who read it get the page, those
    # still to answer its conflict check get that check again, urgent.
    seats = access.notified(seats)
    seated = [s.handle for s in seats]
    if step.notify == "on-duty":
        handles = (on_call(db, enqueue.rotation, now, seated)
                   if enqueue.rotation is not None else [])
        # Whoever is on duty now triages the case, so they read it (duty may have
        # changed hands since it was opened).
        seats = _clear(db, seats, handles, now)
    elif step.notify == "chair":
        handles = [h for h in seated if "chair" in _roles(config.committee.members, h)]
        if not handles:
            # The chair has recused (or there is none): the step still reaches someone.
            data["instead_of_chair"] = True
            handles = seated
    else:
        handles = seated
    data["members"] = handles
    if not handles:
        log.error("case #%d: escalation step %s reached nobody", case_id, step.name)
        return case_events.row(case_id, now, EventKind.NOBODY_PAGED, data), []
    log.info("case #%d: escalation step %s to %d member(s)", case_id, step.name, len(handles))
    chosen = [s for s in seats if s.handle in handles]
    # Those still to answer the conflict check get it again, urgent: no content.
    return case_events.row(case_id, now, EventKind.ESCALATED, data), urgent_mails(
        case_id, access.readers(chosen), roots, step.name,
        payloads.Escalation(step.notify, waited=step.seconds, paged=handles,
                            instead_of_chair=data.get("instead_of_chair", False)),
    ) + conflict_notices(case_id, chosen, f"escalation:{step.name}",
                         payloads.Conflict(waited=step.seconds))


def _clear(db: Connection, seats: list[Seat], handles: Collection[str],
           at: dt.datetime) -> list[Seat]:
    """Clear the seats of ``handles`` to read the case; ``seats`` as they are now."""
    chosen = [s for s in access.pending(seats) if s.handle in handles]
    writes.clear(db, [s.participant_id for s in chosen], at)
    return [replace(s, standing=Standing.READS) if s in chosen else s for s in seats]


def critical(db: Connection, enqueue: Enqueue, case_id: int, message_id: int, by: str,
             seats: Sequence[Seat], now: dt.datetime) -> list[Mail]:
    """``severity critical``: page every member who may see the case (but the one
    who said so) at once, asking for an urgent meeting. Once per case: set again
    after a change, it pages nobody twice."""
    already = db.execute(select(Event.data).where(
        Event.case_id == case_id, Event.kind == EventKind.ESCALATED)).scalars()
    if any(data.get("step") == CRITICAL for data in already):
        return []
    others = [s for s in access.notified(seats) if s.handle != by]
    handles = [s.handle for s in others]
    writes.insert_events(db, [case_events.row(
        case_id, now, EventKind.ESCALATED if handles else EventKind.NOBODY_PAGED,
        {"step": CRITICAL, "members": handles, "by": by}, message_id=message_id)])
    # Members still to answer the conflict check get it again, marked urgent.
    return urgent_mails(case_id, access.readers(others),
                        enqueue.thread_roots(db, [case_id]), CRITICAL,
                        payloads.Escalation(CRITICAL, paged=handles, by=by),
                        source_message_id=message_id) + conflict_notices(
        case_id, others, CRITICAL, payloads.Conflict(critical=True))


def urgent_mails(case_id: int, seats: Iterable[Seat], roots: dict[int, str], step: str,
                 payload: payloads.Escalation,
                 source_message_id: int | None = None) -> list[Mail]:
    """``source_message_id``: the message that caused them (the send-time check
    holds them from a member it is kept from)."""
    return [Mail(ESCALATION, seat.email, case_id, step=step, participant_id=seat.participant_id,
                 source_message_id=source_message_id,
                 in_reply_to=roots.get(seat.participant_id),
                 references=roots.get(seat.participant_id), payload=payload)
            for seat in seats]


def paged_members(db: Connection, case_id: int) -> set[str]:
    """Everyone cocmail paged about the case, by their handle now: the triagers,
    and each escalation."""
    now = members.current_handles(db)
    found: set[str] = set()
    for data in db.execute(select(Event.data).where(
            Event.case_id == case_id, Event.kind.in_(PAGING_EVENTS))).scalars():
        found.update(now.get(handle, handle) for handle in data.get("members", []))
    return found


def _roles(members: Sequence[Member], handle: str) -> tuple[str, ...]:
    member = member_of(members, handle)
    return member.roles if member is not None else ()
