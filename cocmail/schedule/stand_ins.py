"""Who stands in when a member steps back from a case (a recusal, or a keep-out
the reporter sends later): the next member of the rotation is paged in place of
a triager of a case nobody has acknowledged, and when fewer than two members
remain able to act on it, the case goes to the mediator (``committee.mediator``)
with a seat, their own reply address, every command, and the case so far."""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from cocmail.case import access, events
from cocmail.case.access import Seat
from cocmail.case.events import EventKind
from cocmail.config import MEDIATOR, Committee
from cocmail.notify import payloads
from cocmail.notify.enqueue import Enqueue, Mail
from cocmail.notify.kinds import CASEFILE, PAGE
from cocmail.schedule.escalation import paged_members
from cocmail.store import writes
from cocmail.store.models import Case, Member, Message

log = logging.getLogger(__name__)


def after_stepping_back(db: Connection, committee: Committee, enqueue: Enqueue, case_id: int,
                        handle: str, roots: dict[int, str], now: dt.datetime) -> list[Mail]:
    """Member ``handle`` can no longer act on the case: a stand-in triager and,
    when needed, the mediator."""
    seats = access.load(db, [case_id])[case_id].seats
    return (replace_triager(db, enqueue, case_id, handle, seats, roots, now)
            + seat_mediator(db, committee, case_id, seats, now))


def replace_triager(db: Connection, enqueue: Enqueue, case_id: int, handle: str,
                    seats: tuple[Seat, ...], roots: dict[int, str],
                    now: dt.datetime) -> list[Mail]:
    """A triager stepped back from a case nobody has acknowledged: page the next
    member of the rotation who can act on it instead."""
    paged = paged_members(db, case_id)
    waiting = db.execute(select(Case.acknowledged_at, Case.closed_at).where(
        Case.id == case_id)).one()
    rotation = enqueue.rotation
    if handle not in paged or waiting.acknowledged_at or waiting.closed_at or not rotation:
        return []
    able = {s.handle: s for s in access.able(seats)}
    order = list(rotation.order)
    start = order.index(handle) if handle in order else 0
    candidates = [order[(start + k) % len(order)] for k in range(1, len(order))]
    stand_in = next((h for h in candidates if h in able and h not in paged), None)
    if stand_in is None:
        log.error("case #%d: a triager stepped back and nobody else can triage it", case_id)
        writes.insert_events(db, [events.row(case_id, now, EventKind.NOBODY_PAGED,
                                              {"members": [], "instead_of": handle})])
        return []
    writes.insert_events(db, [events.row(case_id, now, EventKind.PAGED,
                                          {"members": [stand_in], "instead_of": handle})])
    first = db.execute(select(func.min(Message.id)).where(
        Message.case_id == case_id)).scalar_one()
    seat = able[stand_in]
    writes.clear(db, [seat.participant_id], now)  # a triager reads the report
    still = {s.handle for s in access.able(seats)}
    on_duty = [h for h in paged if h != handle and h in still] + [stand_in]
    return [Mail(PAGE, seat.email, case_id, participant_id=seat.participant_id,
                 source_message_id=first, in_reply_to=roots.get(seat.participant_id),
                 references=roots.get(seat.participant_id), payload=payloads.OnDuty(on_duty))]


def seat_mediator(db: Connection, committee: Committee, case_id: int,
                  seats: tuple[Seat, ...], now: dt.datetime) -> list[Mail]:
    """When fewer than two members remain able to act on the case, its mediator
    gets a seat, cleared, with their own reply address and every command, and
    the case so far."""
    able = [s.handle for s in access.able(seats) if s.handle != MEDIATOR]
    if len(able) >= 2 or any(s.handle == MEDIATOR for s in seats):
        return []
    mediator = committee.mediator
    member_id = db.execute(select(Member.id).where(Member.handle == MEDIATOR,
                                                   Member.active.is_(True))).scalar()
    if mediator is None or member_id is None:
        log.error("case #%d: %d member(s) able to act and no mediator configured",
                  case_id, len(able))
        return []
    pid = writes.insert_participants(db, [writes.member_seat(
        case_id, member_id, MEDIATOR, "Mediator", now, cleared=True)])[0]
    writes.insert_events(db, [events.row(case_id, now, EventKind.MEDIATOR, {"able": able})])
    log.info("case #%d: %d member(s) able to act; the mediator is given the case",
             case_id, len(able))
    return [Mail(CASEFILE, mediator, case_id, step=MEDIATOR, participant_id=pid)]
