"""Who may see a case and who may act in it: the one rule (DESIGN.md rule 4).

Every path that queues, sends, lists or shows anything about a case asks this
module, and nothing else reads seats, recusals, keep-outs or ``cleared_at`` to
decide it. A member's place in one case is their ``Standing``, worked out from
four facts by ``standing``; ``RULES`` says what each standing allows:

================  =======  =======  ====  ==========================
standing          content  notices  vote  commands
================  =======  =======  ====  ==========================
reads             yes      yes      yes   every one
recused-soft      yes      yes      no    every one but vote, decide
pending           no       yes      no    no-conflict, recuse, help
recused-hard      no       no       no    none
kept-out          no       no       no    none
removed           no       no       no    none
================  =======  =======  ====  ==========================

*Content* is anything of what was reported or said in the case (pages, the
case so far, messages, status mails, reminders). *Notices* carry no content:
a conflict check (the case number and the people named, never who reported),
a case's line in a hand-off. A member the reporter kept out, one who recused
hard and one who left the roster get nothing at all, and their replies act on
nothing. One message may also be kept from one member (``kept_out``): it was
sent to their ``without-`` address by someone other than the reporter.

Outside the committee: the reporter gets their acknowledgement; a party gets
what a member relays to them, and a relay to anyone who reported in the case
(or was filed for) waits for a second member's ``approve`` whatever role they
were named under (``relay_needs_approval``). Each kind of mail names its
``Audience``; ``refusal`` says, when a mail is about to go, why it must not.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from cocmail.store.models import Case, Member, MessageKeepOut, Participant, Recusal

MEMBER_ROLE = "member"  # a seat of a committee member (or the mediator)
REPORTER_ROLES = ("reporter", "reported-by")  # who reported, and who a filing was made for
PARTY_ROLES = ("respondent", "witness", "reporter", "observer", "reported-by")


class Standing(enum.StrEnum):
    READS = "reads"  # cleared to read: triages the case, or answered no-conflict
    SOFT = "recused-soft"  # reads the case, does not vote or decide
    PENDING = "pending"  # the conflict check is not answered yet
    RECUSED = "recused-hard"  # stepped back: nothing more
    KEPT_OUT = "kept-out"  # kept out by the reporter: nothing, and never told why
    REMOVED = "removed"  # no longer on the roster: nothing at all


@dataclass(frozen=True)
class Allows:
    content: bool
    notices: bool
    vote: bool
    commands: frozenset[str] | None  # None: every command


_ALL = None
_NONE: frozenset[str] = frozenset()
# What a member who has not answered the conflict check may do in a case.
BEFORE_CLEARED = frozenset({"no-conflict", "recuse", "help"})

RULES: dict[Standing, Allows] = {
    Standing.READS: Allows(content=True, notices=True, vote=True, commands=_ALL),
    Standing.SOFT: Allows(content=True, notices=True, vote=False, commands=_ALL),
    Standing.PENDING: Allows(content=False, notices=True, vote=False, commands=BEFORE_CLEARED),
    Standing.RECUSED: Allows(content=False, notices=False, vote=False, commands=_NONE),
    Standing.KEPT_OUT: Allows(content=False, notices=False, vote=False, commands=_NONE),
    Standing.REMOVED: Allows(content=False, notices=False, vote=False, commands=_NONE),
}
# Commands that are a vote (refused to a standing that may not vote).
VOTING = frozenset({"vote", "decide"})


def standing(*, active: bool, seated: bool, cleared: bool, recusal: str | None) -> Standing:
    """A member's standing in a case, from the facts the store keeps.

    >>> standing(active=True, seated=True, cleared=True, recusal=None)
    <Standing.READS: 'reads'>
    >>> standing(active=True, seated=True, cleared=False, recusal=None)
    <Standing.PENDING: 'pending'>
    >>> standing(active=True, seated=True, cleared=True, recusal="soft")
    <Standing.SOFT: 'recused-soft'>
    >>> standing(active=True, seated=True, cleared=True, recusal="excl")
    <Standing.KEPT_OUT: 'kept-out'>
    >>> standing(active=False, seated=True, cleared=True, recusal=None)  # left the roster
    <Standing.REMOVED: 'removed'>
    >>> standing(active=True, seated=False, cleared=True, recusal=None)  # seat lost
    <Standing.REMOVED: 'removed'>
    """
    if not active or not seated:
        return Standing.REMOVED
    if recusal == "excl":
        return Standing.KEPT_OUT
    if recusal == "hard":
        return Standing.RECUSED
    if not cleared:
        return Standing.PENDING
    return Standing.SOFT if recusal == "soft" else Standing.READS


def reads_at_opening(handle: str, paged: Collection[str], *, rotation: bool) -> bool:
    """Does a member read a new case at once? Its triagers do: the members paged
    about it. Without a rotation nobody is on duty, the whole committee triages,
    and every member reads it. Everyone else first gets the conflict check.

    >>> reads_at_opening("alice", ["alice", "bob"], rotation=True)
    True
    >>> reads_at_opening("carol", ["alice", "bob"], rotation=True)
    False
    >>> reads_at_opening("carol", [], rotation=False)
    True
    """
    return not rotation or handle in paged


def may_run(state: Standing, command: str) -> bool:
    """May a member of this standing run ``command`` in the case?

    >>> may_run(Standing.READS, "relay"), may_run(Standing.SOFT, "vote")
    (True, False)
    >>> may_run(Standing.PENDING, "no-conflict"), may_run(Standing.PENDING, "ack")
    (True, False)
    >>> may_run(Standing.REMOVED, "help"), may_run(Standing.KEPT_OUT, "recuse")
    (False, False)
    """
    allows = RULES[state]
    if command in VOTING and not allows.vote:
        return False
    return allows.commands is None or command in allows.commands


def acts(state: Standing) -> bool:
    """Does a reply from a member of this standing act on the case at all (a
    command, or a note passed on)? Otherwise it is kept and nothing more."""
    return RULES[state].commands != _NONE


@dataclass(frozen=True)
class Seat:
    """A member's seat in one case, as the rule sees it."""

    participant_id: int
    member_id: int | None
    handle: str
    email: str  # where their mail goes now
    standing: Standing
    cleared_since: dt.datetime | None = None  # when they were cleared to read, for the record

    @property
    def reads(self) -> bool:
        return RULES[self.standing].content

    @property
    def notified(self) -> bool:
        return RULES[self.standing].notices

    @property
    def cleared(self) -> bool:
        """Cleared to read (a seat whose conflict check is answered, or triaging)."""
        return self.standing in (Standing.READS, Standing.SOFT)


def readers(seats: Iterable[Seat], kept_out: Collection[int] = ()) -> list[Seat]:
    """The seats that may read the case's content now (and, with ``kept_out``,
    the member ids one message is kept from, that message)."""
    return [s for s in seats if s.reads and s.member_id not in kept_out]


def pending(seats: Iterable[Seat]) -> list[Seat]:
    """The seats still to answer the case's conflict check."""
    return [s for s in seats if s.standing is Standing.PENDING]


def notified(seats: Iterable[Seat]) -> list[Seat]:
    """The seats that may get content-free notices about the case."""
    return [s for s in seats if s.notified]


def voters(seats: Iterable[Seat]) -> list[Seat]:
    """The seats that may vote on and decide the case."""
    return [s for s in seats if RULES[s.standing].vote]


def able(seats: Iterable[Seat]) -> list[Seat]:
    """The seats that can act on the case with no recusal at all: those who may
    triage it in place of a triager who stepped back, and who count towards the
    two a case needs before its mediator is called."""
    return [s for s in seats if s.standing in (Standing.READS, Standing.PENDING)]


def relay_needs_approval(role: str, address_key: str, reporter_keys: Collection[str],
                         approval_roles: Collection[str]) -> bool:
    """Does a relay to this party wait for a second member's ``approve``? Approval
    follows the person: anyone who reported in the case, or for whom a filing was
    made, counts as the reporter whatever role a member added them under. People
    are compared by the keyed hashes of their addresses (``CaseAccess.reporter_keys``),
    which a purge leaves.

    >>> relay_needs_approval("observer", "k-rita", {"k-rita"}, ["reporter"])
    True
    >>> relay_needs_approval("witness", "k-sam", {"k-rita"}, ["reporter"])
    False
    >>> relay_needs_approval("witness", "k-sam", set(), ["witness"])
    True
    """
    if role in approval_roles:
        return True
    return "reporter" in approval_roles and address_key in reporter_keys


def conflict_parties(parties: Iterable[tuple[str, str, str | None]],
                     reporter_keys: Collection[str],
                     key_of: Callable[[str], str]) -> list[tuple[str, str, str | None]]:
    """The (role, email, name) a conflict check may show: who reported is never
    told to a member before they have answered it, under whatever role (people
    compared by ``key_of`` their address, as ``relay_needs_approval`` does).

    >>> conflict_parties([("respondent", "sam@x", "Sam"), ("observer", "Rita@x", None)],
    ...                  {"k-rita@x"}, lambda a: "k-" + a.lower())
    [('respondent', 'sam@x', 'Sam')]
    """
    return [p for p in parties if key_of(p[1]) not in reporter_keys]


@dataclass(frozen=True)
class CaseAccess:
    """What the rule needs to know of one case."""

    case_id: int
    seats: tuple[Seat, ...]
    # Every other participant: id -> (role, email).
    others: dict[int, tuple[str, str]] = field(default_factory=dict)
    # The members the reporter kept out of it (seated or not): id -> handle now.
    kept_out: dict[int, str] = field(default_factory=dict)
    # The keyed hashes of the reporters' addresses (``participants.email_index``):
    # who reported, still known in a purged case, whose addresses are gone.
    reporter_keys: frozenset[str] = frozenset()

    def seat(self, participant_id: int | None) -> Seat | None:
        return next((s for s in self.seats if s.participant_id == participant_id), None)

    def seat_of(self, member_id: int | None) -> Seat | None:
        return next((s for s in self.seats if s.member_id == member_id), None)


class Audience(enum.StrEnum):
    """Who a kind of mail is for; ``refusal`` holds each mail to it when it goes."""

    READER = "reader"  # case content: a member who may read the case (and the message)
    PENDING = "pending"  # a conflict check: a member still to answer it
    SENDER = "sender"  # a confirmation: the member who wrote the reply, still a member
    MEMBER = "member"  # a digest, a hand-off: a member on the roster
    REPORTER = "reporter"  # the acknowledgement: the reporter's seat in the case
    ADDRESS = "address"  # a notice about no case, to an address that wrote to us
    PARTY = "party"  # a relay: a party's seat in the case


def refusal(audience: Audience, case: CaseAccess | None, participant_id: int | None,
            recipient: str, *, kept_out: Collection[int] = (),
            active_addresses: Collection[str] = ()) -> str | None:
    """Why a mail for ``audience`` must not go to ``recipient`` now, or None when
    it may. ``kept_out``: the members the mail's message is kept from;
    ``active_addresses``: the addresses of the members on the roster (for mail
    about no case)."""
    recipient = recipient.lower()
    if audience is Audience.ADDRESS:
        return None
    if audience is Audience.MEMBER:
        if recipient not in {a.lower() for a in active_addresses}:
            return "the recipient is not a member of the committee now"
        return None
    if case is None:
        return "mail for this audience must be about a case"
    if audience in (Audience.REPORTER, Audience.PARTY):
        other = case.others.get(participant_id or 0)
        if other is None or other[1].lower() != recipient:
            return f"the recipient has no seat in case #{case.case_id} to receive it"
        if audience is Audience.REPORTER and other[0] != "reporter":
            return "an acknowledgement goes only to the reporter's seat"
        if audience is Audience.PARTY and other[0] not in PARTY_ROLES:
            return "a relay goes only to a party of the case"
        return None
    seat = case.seat(participant_id)
    if seat is None:
        return f"case mail goes only to members with a seat in case #{case.case_id}"
    if seat.email.lower() != recipient:
        return f"{seat.handle}'s address is not the one this mail was queued for"
    allowed = {
        Audience.READER: seat.reads and seat.member_id not in kept_out,
        Audience.PENDING: seat.standing is Standing.PENDING,
        Audience.SENDER: seat.standing is not Standing.REMOVED,
    }[audience]
    if allowed:
        return None
    if audience is Audience.PENDING:
        return "the conflict check was answered"
    return f"{seat.handle} may not receive it in case #{case.case_id} ({seat.standing})"


def load(db: Connection, case_ids: Iterable[int]) -> dict[int, CaseAccess]:
    """The rule's facts for each case: its seats (with each member's standing) and
    its other participants. Two queries, whatever the number of cases."""
    wanted = sorted(set(case_ids))
    if not wanted:
        return {}
    recusals: dict[tuple[int, int], str] = {}
    kept_out: dict[int, dict[int, str]] = {case_id: {} for case_id in wanted}
    for case_id, member_id, kind, handle in db.execute(
            select(Recusal.case_id, Recusal.member_id, Recusal.kind, Member.handle)
            .join(Member, Member.id == Recusal.member_id).where(Recusal.case_id.in_(wanted))):
        recusals[(case_id, member_id)] = kind
        if kind == "excl":
            kept_out[case_id][member_id] = handle
    seats: dict[int, list[Seat]] = {case_id: [] for case_id in wanted}
    others: dict[int, dict[int, tuple[str, str]]] = {case_id: {} for case_id in wanted}
    reporter_keys: dict[int, set[str]] = {case_id: set() for case_id in wanted}
    for row in db.execute(
            select(Participant.case_id, Participant.id, Participant.role, Participant.email,
                   Participant.email_index,
                   Participant.handle, Participant.member_id, Participant.cleared_at,
                   Participant.left_at, Member.email.label("current"), Member.handle.label(
                       "now_handle"), Member.active)
            .outerjoin(Member, Member.id == Participant.member_id)
            .where(Participant.case_id.in_(wanted)).order_by(Participant.id)):
        if row.role != MEMBER_ROLE:
            others[row.case_id][row.id] = (row.role, row.email)
            if row.role in REPORTER_ROLES and row.email_index:
                reporter_keys[row.case_id].add(row.email_index)
            continue
        # A member with no address (known only from a keep-out written before
        # members were rows, and not on the roster since) is nobody to send to.
        state = standing(active=bool(row.active) and row.current is not None,
                         seated=row.left_at is None, cleared=row.cleared_at is not None,
                         recusal=recusals.get((row.case_id, row.member_id)))
        seats[row.case_id].append(Seat(row.id, row.member_id, row.now_handle or row.handle or "",
                                       row.current or "", state, row.cleared_at))
    return {case_id: CaseAccess(case_id, tuple(seats[case_id]), others[case_id],
                                kept_out[case_id], frozenset(reporter_keys[case_id]))
            for case_id in wanted}


def kept_out_of(db: Connection, message_ids: Iterable[int]) -> dict[int, set[int]]:
    """For each message, the members it is kept from (``MessageKeepOut``)."""
    wanted = sorted(set(message_ids))
    found: dict[int, set[int]] = {}
    if wanted:
        for message_id, member_id in db.execute(
                select(MessageKeepOut.message_id, MessageKeepOut.member_id)
                .where(MessageKeepOut.message_id.in_(wanted))):
            found.setdefault(message_id, set()).add(member_id)
    return found


def cases_seen_by(db: Connection, member_id: int, *, content: bool = True,
                  among: Collection[int] | None = None) -> list[int]:
    """The open cases (or, with ``among``, those of these cases, open or closed)
    whose content member ``member_id`` may read now (``content``), or whose
    content-free notices they may get. Reads that member's seats and recusals in
    those cases only (looked up by case, so the cost follows the open cases): a
    digest or a hand-off asks it for each member at every tick until it is queued."""
    cases: Any = (select(Case.id).where(Case.closed_at.is_(None)) if among is None
                  else sorted(set(among)))
    active = db.execute(select(Member.active).where(Member.id == member_id)).scalar()
    seats = db.execute(select(Participant.case_id, Participant.member_id,
                              Participant.cleared_at, Participant.left_at).where(
        Participant.case_id.in_(cases), Participant.role == MEMBER_ROLE)).all()
    recusals = {case_id: kind for case_id, kind in db.execute(
        select(Recusal.case_id, Recusal.kind).where(Recusal.member_id == member_id,
                                                    Recusal.case_id.in_(cases)))}
    found = []
    for case_id, seat_member, cleared_at, left_at in seats:
        if seat_member != member_id:
            continue
        allows = RULES[standing(active=bool(active), seated=left_at is None,
                                cleared=cleared_at is not None,
                                recusal=recusals.get(case_id))]
        if allows.content if content else allows.notices:
            found.append(case_id)
    return sorted(found)


def unseated(db: Connection, member_ids: Collection[int]) -> list[tuple[int, int, int | None]]:
    """For each open case a member of ``member_ids`` has no seat in (one who joined
    the roster since it opened, or came back to it) and was not kept out of: (case
    id, member id, the id of the seat they lost when they left, or None)."""
    if not member_ids:
        return []
    open_cases = select(Case.id).where(Case.closed_at.is_(None))
    # Looked up by case (the open ones), not by member: a member's seats in
    # closed cases are most of them, and none of them counts here.
    seats = {(case_id, member_id): (pid, left_at) for case_id, member_id, pid, left_at in
             db.execute(select(Participant.case_id, Participant.member_id, Participant.id,
                               Participant.left_at).where(
                 Participant.role == MEMBER_ROLE, Participant.case_id.in_(open_cases)))}
    kept_out = {(a, b) for a, b in db.execute(select(Recusal.case_id, Recusal.member_id).where(
        Recusal.kind == "excl", Recusal.case_id.in_(open_cases)))}
    found: list[tuple[int, int, int | None]] = []
    for case_id in db.execute(open_cases.order_by(Case.id)).scalars():
        for member_id in member_ids:
            if (case_id, member_id) in kept_out:
                continue
            seat = seats.get((case_id, member_id))
            if seat is None:
                found.append((case_id, member_id, None))
            elif seat[1] is not None:
                found.append((case_id, member_id, seat[0]))
    return found
