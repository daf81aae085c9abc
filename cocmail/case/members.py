"""The committee's members as the store knows them: one identity each, kept in
step with the roster (``committee.members`` and the mediator) at every start.

A member in the roster is the member already known with the same handle, or
else the one with the same address: a new handle or a new address keeps the
identity, and with it every seat, recusal and keep-out. A change of both at
once is a new member. A known member missing from the roster leaves it: they
lose every seat at once (``Participant.left_at``), the mail still queued for
them is cancelled, and each of their cases records ``member-removed``; one who
comes back is the same identity again, and is seated anew, not cleared, in the
open cases (``schedule/late_members.py``). A handle, once a member's, names
that member for good: history written under it stays theirs.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, text, update
from sqlalchemy.engine import Connection

from cocmail.case import events
from cocmail.case.events import EventKind
from cocmail.config import MEDIATOR, Committee
from cocmail.errors import ConfigError
from cocmail.store import writes
from cocmail.store.db import Store
from cocmail.store.models import (
    Case,
    Emergency,
    FollowUp,
    Member,
    MemberHandle,
    Outbox,
    Participant,
    RotationOverride,
)

log = logging.getLogger(__name__)

MEMBER_ROLE = "member"
# The transaction-scoped lock two starting daemons take on PostgreSQL, so one
# roster change is applied once (SQLite's write lock does the same there).
_SYNC_LOCK = 0x636F636D  # "cocm"


@dataclass(frozen=True)
class Known:
    """A member as the store has them."""

    id: int
    handle: str
    email: str | None
    active: bool


@dataclass(frozen=True)
class Wanted:
    """A member as the roster names them."""

    handle: str
    email: str
    name: str | None
    key: str  # the config key that names them, for errors


@dataclass(frozen=True)
class Plan:
    """What a sync does: ``same`` (known, wanted) pairs, ``new`` members, and the
    known members who ``leave``."""

    same: tuple[tuple[Known, Wanted], ...]
    new: tuple[Wanted, ...]
    leave: tuple[Known, ...]


def match(known: Sequence[Known], wanted: Sequence[Wanted]) -> Plan:
    """Pair each member of the roster with the identity already known: same
    handle and address first, then the same handle, then the same address.

    >>> k = [Known(1, "alice", "a@x", True), Known(2, "bob", "b@x", True),
    ...      Known(3, "carol", "c@x", True)]
    >>> w = [Wanted("alice", "a@x", None, "m0"), Wanted("robert", "b@x", None, "m1"),
    ...      Wanted("carol", "carol@new", None, "m2"), Wanted("erin", "e@x", None, "m3")]
    >>> plan = match(k, w)
    >>> [(known.id, want.handle) for known, want in plan.same]
    [(1, 'alice'), (3, 'carol'), (2, 'robert')]
    >>> [want.handle for want in plan.new], plan.leave
    (['erin'], ())
    >>> match(k, [Wanted("bobby", "bob@new", None, "m0")]).new[0].handle  # both changed
    'bobby'
    """
    free = list(known)
    pairs: list[tuple[Known, Wanted]] = []
    todo = list(wanted)
    rules: list[Callable[[Known, Wanted], bool]] = [
        lambda k, w: k.handle == w.handle and _eq(k.email, w.email),
        lambda k, w: k.handle == w.handle,
        lambda k, w: _eq(k.email, w.email)]
    for same in rules:
        left = []
        for want in todo:
            found = next((k for k in free if same(k, want)), None)
            if found is None:
                left.append(want)
            else:
                free.remove(found)
                pairs.append((found, want))
        todo = left
    return Plan(tuple(pairs), tuple(todo), tuple(k for k in free if k.active))


def _eq(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.lower() == b.lower()


def roster_of(committee: Committee) -> list[Wanted]:
    """The roster in the config: the members, and the mediator."""
    wanted = [Wanted(m.handle, m.email.lower(), m.name, f"committee.members[{i}]")
              for i, m in enumerate(committee.members)]
    if committee.mediator:
        wanted.append(Wanted(MEDIATOR, committee.mediator.lower(), "Mediator",
                             "committee.mediator"))
    return wanted


@dataclass(frozen=True)
class Started:
    """What a start learns of the store: whether it holds no case yet (then a
    missing token key may be made), and the handles a keep-out address may name."""

    empty: bool
    handles: frozenset[str]


def start(store: Store, committee: Committee, now: dt.datetime) -> Started:
    """What every process that takes mail does when it starts: the roster synced,
    each change logged."""
    with store.transaction() as db:
        changes = sync(db, committee, now)
        for change in changes:
            log.info("roster: %s", change)
        left = [c for c in changes if c.endswith(" left the roster")]
        joined = [c for c in changes if c.endswith(" joined")]
        if left and joined:
            # A member whose handle and address both changed at once is a new
            # member: their keep-outs and every recusal stay with the one who left.
            log.warning("roster: %s and %s at the same start; if one is the other with a "
                        "new handle and a new address, they are now two members (the "
                        "newcomer is seated, not cleared, in the open cases): change one "
                        "of the two at a time to keep one identity",
                        ", ".join(c.split()[0] for c in left),
                        ", ".join(c.split()[0] for c in joined))
        empty = db.execute(select(Case.id).limit(1)).first() is None
        return Started(empty, keep_out_handles(db))


def keep_out_handles(db: Connection) -> frozenset[str]:
    """The handles a ``without-`` address may name: each member's on the roster,
    and every handle they had before (an acknowledgement sent before a rename
    still keeps them out)."""
    return frozenset(db.execute(select(MemberHandle.handle).join(
        Member, Member.id == MemberHandle.member_id).where(
        Member.active.is_(True), Member.handle != MEDIATOR)).scalars())


def sync(db: Connection, committee: Committee, now: dt.datetime) -> list[str]:
    """Bring the members table in step with the roster; one line for each change
    (for the log). Raises ``ConfigError`` for a roster that would give a handle
    to a second identity."""
    if db.dialect.name == "postgresql":
        db.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SYNC_LOCK})
    known = [Known(row.id, row.handle, row.email, row.active)
             for row in db.execute(select(Member.id, Member.handle, Member.email, Member.active)
                                   .order_by(Member.id))]
    wanted = roster_of(committee)
    seen: dict[str, Wanted] = {}
    for want in wanted:
        other = seen.setdefault(want.email, want)
        if other is not want:
            # A member is known by their address: two cannot share one (and the
            # mediator is a third party). ``cocmail roster check`` lists it too.
            raise ConfigError(f"{want.key}.email" if want.handle != MEDIATOR else want.key,
                              f"{want.email} is also the address of {other.handle}: each "
                              "member needs an address of their own")
    plan = match(known, wanted)
    owners = {a: b for a, b in db.execute(select(MemberHandle.handle, MemberHandle.member_id))}
    for member, want in plan.same:
        owner = owners.get(want.handle)
        if owner is not None and owner != member.id:
            raise ConfigError(f"{want.key}.handle", _taken(want.handle, known, owner))
    for want in plan.new:
        if want.handle in owners:
            raise ConfigError(f"{want.key}.handle", _taken(want.handle, known,
                                                           owners[want.handle]))
    changes: list[str] = []
    # Addresses the roster gives to someone else are freed first (two members may
    # swap theirs; a member who left keeps theirs unless another now has it).
    addresses = {w.email for w in wanted}
    paired = {m.id: w for m, w in plan.same}
    freed = [k.id for k in known if k.email is not None and (
        (k.id in paired and not _eq(k.email, paired[k.id].email))
        or (k.id not in paired and k.email.lower() in addresses))]
    if freed:
        db.execute(update(Member).where(Member.id.in_(freed)).values(email=None))
    for member, want in plan.same:
        changes += _update(db, member, want, now)
    for member in plan.leave:
        changes += _remove(db, member, now)
    for want in plan.new:
        member_id = writes.insert_returning_id(db, Member.__table__, {
            "handle": want.handle, "email": want.email, "name": want.name, "active": True,
            "joined_at": now, "left_at": None})
        db.execute(insert(MemberHandle).values(handle=want.handle, member_id=member_id))
        changes.append(f"{want.handle} joined")
    return changes


def _taken(handle: str, known: Sequence[Known], owner: int) -> str:
    now = next((k.handle for k in known if k.id == owner), handle)
    return (f"{handle!r} was the handle of the member now called {now!r}: a handle names "
            "one member for good; choose another")


def _update(db: Connection, member: Known, want: Wanted, now: dt.datetime) -> list[str]:
    changes = []
    values: dict[str, object] = {"email": want.email, "name": want.name, "active": True,
                                 "left_at": None}
    if member.handle != want.handle:
        values["handle"] = want.handle
    db.execute(update(Member).where(Member.id == member.id).values(**values))
    if not member.active:
        changes.append(f"{want.handle} is back on the roster")
        _events(db, member.id, now, EventKind.MEMBER_RETURNED, {"member": want.handle},
                open_only=True)
    if member.handle != want.handle:
        db.execute(insert(MemberHandle).values(handle=want.handle, member_id=member.id))
        _rename(db, member.id, member.handle, want.handle)
        _events(db, member.id, now, EventKind.MEMBER_RENAMED,
                {"member": want.handle, "before": member.handle}, open_only=True)
        changes.append(f"{member.handle} is now called {want.handle}")
    if not _eq(member.email, want.email):
        # What is still to go goes to the new address only (a seat keeps no address).
        _readdress(db, member.id, member.email, want.email, now)
        _events(db, member.id, now, EventKind.MEMBER_EMAIL_CHANGED, {"member": want.handle},
                open_only=True)
        changes.append(f"{want.handle} has a new address")
    return changes


def _rename(db: Connection, member_id: int, before: str, after: str) -> None:
    """A new handle wherever a handle is kept as the member's current name."""
    db.execute(update(Participant).where(Participant.member_id == member_id)
               .values(handle=after))
    db.execute(update(Case).where(Case.assignee == before).values(assignee=after))
    db.execute(update(Emergency).where(Emergency.by == before).values(by=after))
    db.execute(update(Emergency).where(Emergency.resolved_by == before)
               .values(resolved_by=after))
    db.execute(update(FollowUp).where(FollowUp.by == before).values(by=after))
    db.execute(update(RotationOverride).where(RotationOverride.member == before)
               .values(member=after))
    db.execute(update(RotationOverride).where(RotationOverride.instead_of == before)
               .values(instead_of=after))
    # Handles kept in queued mail and in events stay as they were written: they
    # are read through ``current_handles`` (every handle a member had).


def _readdress(db: Connection, member_id: int, before: str | None, after: str,
               now: dt.datetime) -> None:
    seats = select(Participant.id).where(Participant.member_id == member_id)
    waiting = Outbox.status.in_(("queued", "held"))
    rows = db.execute(select(Outbox.id, Outbox.key, Outbox.case_id).where(
        waiting, Outbox.participant_id.in_(seats) | (
            Outbox.participant_id.is_(None) & _to(db, before))
    )).all()
    index = writes.participant_index(db, after)
    for row_id, key, case_id in rows:
        # The key ends with the recipient's keyed hash (``writes.insert_outbox``).
        new_key = f"{key.rsplit(':', 1)[0]}:{index}"
        clash = db.execute(select(Outbox.id).where(Outbox.key == new_key,
                                                   Outbox.id != row_id)).first()
        if clash is not None:
            db.execute(update(Outbox).where(Outbox.id == row_id).values(
                **writes.outbox_values(db, case_id, {
                    "status": "cancelled", "last_error": "the member's address changed"},
                    now)))
            continue
        db.execute(update(Outbox).where(Outbox.id == row_id).values(
            **writes.outbox_values(db, case_id, {"recipient": after.lower()}, now),
            key=new_key))


def _to(db: Connection, address: str | None) -> Any:
    """Outbox rows to ``address`` (matched by its keyed hash)."""
    return Outbox.recipient_index == writes.participant_index(db, address or "")


def _remove(db: Connection, member: Known, now: dt.datetime) -> list[str]:
    db.execute(update(Member).where(Member.id == member.id).values(active=False, left_at=now))
    _events(db, member.id, now, EventKind.MEMBER_REMOVED, {"member": member.handle},
            open_only=False)
    seats = select(Participant.id).where(Participant.member_id == member.id)
    db.execute(update(Participant).where(Participant.member_id == member.id,
                                         Participant.left_at.is_(None)).values(left_at=now))
    waiting = Outbox.status.in_(("queued", "held"))
    for row_id, case_id in db.execute(select(Outbox.id, Outbox.case_id).where(
            waiting, Outbox.participant_id.in_(seats) | (
                Outbox.participant_id.is_(None) & _to(db, member.email)))).all():
        db.execute(update(Outbox).where(Outbox.id == row_id).values(**writes.outbox_values(
            db, case_id, {"status": "cancelled",
                          "last_error": "no longer a member of the committee"}, now)))
    return [f"{member.handle} left the roster"]


def _events(db: Connection, member_id: int, now: dt.datetime, kind: EventKind,
            data: dict[str, object], *, open_only: bool) -> None:
    """One event in each case the member has a seat in (the open ones only)."""
    query = select(Participant.case_id).where(Participant.member_id == member_id,
                                              Participant.left_at.is_(None))
    if open_only:
        query = query.join(Case, Case.id == Participant.case_id).where(Case.closed_at.is_(None))
    cases = sorted(set(db.execute(query).scalars()))
    writes.insert_events(db, [events.row(case_id, now, kind, data) for case_id in cases])


@dataclass(frozen=True)
class RosterMember:
    """A member on the roster now, with their identity."""

    id: int
    handle: str
    email: str
    name: str | None

    @property
    def is_mediator(self) -> bool:
        return self.handle == MEDIATOR


def roster(db: Connection) -> list[RosterMember]:
    """The members on the roster now (the mediator included), in the order they joined."""
    return [RosterMember(row.id, row.handle, row.email, row.name) for row in db.execute(
        select(Member.id, Member.handle, Member.email, Member.name)
        .where(Member.active.is_(True), Member.email.is_not(None)).order_by(Member.id))]


def by_address(roster: Sequence[RosterMember], address: str) -> RosterMember | None:
    """The member on the roster whose address this is, if any."""
    address = address.lower()
    return next((m for m in roster if m.email.lower() == address), None)


def handles(db: Connection) -> dict[str, int]:
    """Every handle ever given, to the member it names (history keeps old ones)."""
    return {a: b for a, b in db.execute(select(MemberHandle.handle, MemberHandle.member_id))}


def current_handles(db: Connection) -> dict[str, str]:
    """Every handle ever given, to the member's handle now."""
    now = {a: b for a, b in db.execute(select(Member.id, Member.handle))}
    return {old: now[member_id] for old, member_id in handles(db).items()}
