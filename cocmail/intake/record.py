"""Writing what routing decided, for a batch of messages at once: the new cases
and their seats, the messages, the keep-outs, the history, the quarantine, and
the mail it all causes, each kind of row by one statement for the whole batch."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.engine import Connection

from cocmail.case import access, members
from cocmail.case import events as case_events
from cocmail.case.events import EventKind
from cocmail.clock import Clock
from cocmail.commands.replies import MemberReplies
from cocmail.config import Committee, member_of
from cocmail.intake.inbound import Accepted, attachment_rows
from cocmail.notify.enqueue import Enqueue, Mail, message_mails, opened_mails
from cocmail.parse.auth_results import failure
from cocmail.parse.automatic import original_sender
from cocmail.parse.mailbox import mailbox
from cocmail.parse.message import ParsedMessage
from cocmail.parse.reply_text import new_text
from cocmail.parse.text import clean
from cocmail.route import routing as route
from cocmail.route.behalf import OnBehalf
from cocmail.route.behalf import read as read_filing
from cocmail.schedule import stand_ins
from cocmail.schedule.roster import on_duty_now, replace_unseated
from cocmail.store import writes

log = logging.getLogger("cocmail.intake.service")

Seating = Callable[["Decided"], tuple[int | None, int | None]]


@dataclass(frozen=True, eq=False)
class Decided:
    """One routing decision waiting to be written (compared by identity)."""

    decision: route.Route
    parsed: ParsedMessage | None
    envelope_from: str | None
    message: dict[str, object] | int  # the new message's columns, or a stored one's id
    automatic: str | None  # why it is automatic: then it causes no mail


@dataclass
class _Opened:
    """The cases a batch opens, by ``id`` of the entry that opens each."""

    case_ids: dict[int, int]
    filed: dict[int, OnBehalf | None]  # a member's filing for someone else
    paged: dict[int, list[str]]
    reporters: dict[int, int]  # the reporter's participant id
    seats: dict[int, list[access.Seat]]  # case id -> the members' seats
    roster: list[members.RosterMember]


class Recorder:
    def __init__(self, committee: Committee, clock: Clock, enqueue: Enqueue) -> None:
        self.committee = committee
        self.clock = clock
        self.enqueue = enqueue
        self.replies = MemberReplies(committee, clock, enqueue)

    def write(self, db: Connection, entries: list[Decided]) -> list[Accepted]:
        """Record routing decisions. Each entry's ``message`` is the new message's column
        values (inserted here, already pointing at its case) or the id of a stored
        message. Rows of one kind are written by one statement for the whole list."""
        now = self.clock.now()
        handles = members.handles(db) if any(e.decision.without for e in entries) else {}
        opened = self._open(db, [e for e in entries if e.decision.action == "open"], handles,
                            now)

        def seat(entry: Decided) -> tuple[int | None, int | None]:
            if entry.decision.action == "open":
                return opened.case_ids[id(entry)], opened.reporters.get(id(entry))
            return entry.decision.case_id, entry.decision.participant_id

        message_ids = _store_messages(db, entries, seat)
        # A keep-out in mail to a case: the member is kept out of the case (from its
        # reporter) or from this message (from anyone else), before its mail is made.
        stand_in_mail: list[Mail] = []
        for entry in entries:
            if entry.decision.action == "join" and entry.decision.without:
                assert entry.decision.case_id is not None
                # Of the case only from its reporter at her own reply address: mail
                # threaded by headers proves nothing of who sent it.
                whole_case = entry.decision.role == "reporter" and entry.decision.verified
                stand_in_mail += self.keep_out(db, entry.decision.case_id,
                                               message_ids[id(entry)], whole_case,
                                               entry.decision.without, now)
        results = self._history(db, entries, message_ids, seat, opened, now)
        self.enqueue.queue(db, stand_in_mail + self._mails(
            db, entries, message_ids, seat, opened.seats, opened.paged), now)
        return results

    def _open(self, db: Connection, opens: list[Decided], handles: dict[str, int],
              now: dt.datetime) -> _Opened:
        """The new cases: each seats its reporter and every member of the committee
        (a member who joins later gets a seat, not yet cleared, from the sweep).
        Whom it pages is decided first, so that their seats are written cleared."""
        roster = members.roster(db) if opens else []
        filed = {id(e): self._filed_for(e, roster) for e in opens}
        case_ids = dict(zip(map(id, opens), writes.insert_cases(
            db, [f.channel if f else "email" for f in filed.values()], now), strict=True))
        paged = self._whom_to_page(db, opens, roster, handles, now)
        seated: list[tuple[Decided, dict[str, object]]] = []
        for entry in opens:
            assert entry.parsed is not None
            sender = _reporter_address(entry, self.committee)
            new_case = case_ids[id(entry)]
            if sender:
                name = entry.parsed.from_name if sender == entry.parsed.from_address else None
                seated.append((entry, {"case_id": new_case, "role": "reporter", "email": sender,
                                       "name": name, "created_at": now}))
            on_behalf = filed[id(entry)]
            if on_behalf is not None and on_behalf.reporter and on_behalf.reporter != sender:
                # The person who reported elsewhere: a party, told nothing by cocmail
                # (the member who filed it holds the reporter's seat).
                seated.append((entry, {"case_id": new_case, "role": "reported-by",
                                       "email": on_behalf.reporter, "created_at": now}))
            # Those who read it at once (the triagers) and those who first get the
            # conflict check: ``access.reads_at_opening``.
            kept = {handles[h] for h in entry.decision.without if h in handles}
            seated += [(entry, writes.member_seat(
                new_case, member.id, member.handle, member.name, now,
                cleared=access.reads_at_opening(member.handle, paged[id(entry)],
                                                rotation=self.enqueue.rotation is not None)))
                       for member in roster if not member.is_mediator and member.id not in kept]
        writes.keep_out_of_cases(db, [
            (case_ids[id(entry)], handles[handle])
            for entry in opens for handle in entry.decision.without if handle in handles], now)
        addresses = {member.id: member.email for member in roster}
        opened = _Opened(case_ids, filed, paged, {}, {}, roster)
        for (entry, row), pid in zip(
                seated, writes.insert_participants(db, [row for _, row in seated]), strict=True):
            if row["role"] == "reporter":
                opened.reporters[id(entry)] = pid
            elif row["role"] == access.MEMBER_ROLE:
                member_id = int(str(row["member_id"]))
                opened.seats.setdefault(case_ids[id(entry)], []).append(access.Seat(
                    pid, member_id, str(row["handle"]), addresses[member_id],
                    access.Standing.READS if writes.seat_cleared(row)
                    else access.Standing.PENDING))
        return opened

    def _history(self, db: Connection, entries: list[Decided], message_ids: dict[int, int],
                 seat: Seating, opened: _Opened, now: dt.datetime) -> list[Accepted]:
        """Each message's line in its case's history (and the page of a new case),
        or its quarantine; what became of each."""
        results, events, quarantined = [], [], []
        for entry in entries:
            message_id = message_ids[id(entry)]
            decision = entry.decision
            if decision.action == "quarantine":
                assert decision.reason is not None
                quarantined.append({
                    "message_id": message_id, "reason": decision.reason,
                    "detail": clean(decision.detail or ""),
                    "claimed_case_id": decision.claimed_case_id, "received_at": now})
                log.info("message %d quarantined: %s", message_id, decision.reason)
                results.append(Accepted(message_id, None, False, decision.reason, False))
                continue
            case_id, _ = seat(entry)
            assert case_id is not None
            is_open = decision.action == "open"
            on_behalf = opened.filed.get(id(entry)) if is_open else None
            events.append(case_events.row(
                case_id, now, EventKind.OPENED if is_open else EventKind.MESSAGE,
                ({"channel": on_behalf.channel if on_behalf else "email",
                  "without": list(decision.without),
                  **({"on_behalf_of": on_behalf.reporter or "anonymous",
                      "filed_by": self._member_of(entry, opened.roster)} if on_behalf else {})}
                 if is_open else {"verified": decision.verified}),
                actor="reporter" if is_open else decision.role or "unknown",
                message_id=message_id))
            if is_open and not entry.automatic:  # automatic mail pages nobody (see _mails)
                page = self._page_event(case_id, message_id, opened.paged[id(entry)],
                                        bool(opened.seats.get(case_id)), now)
                if page is not None:
                    events.append(page)
            log.info("message %d %s case #%d", message_id, "opened" if is_open else "joined",
                     case_id)
            results.append(Accepted(message_id, case_id, is_open, None, False))
        writes.insert_events(db, events)
        writes.insert_quarantines(db, quarantined)
        return results


    def keep_out(self, db: Connection, case_id: int, message_id: int, whole_case: bool,
                  without: Sequence[str], now: dt.datetime) -> list[Mail]:
        """Keep the members named by ``without`` out: of the case from now on
        (``whole_case``: its reporter asked; a recusal of kind "excl", with a
        stand-in when one was triaging it), else of this message only. The mail of
        a stand-in, if any."""
        handles = members.handles(db)
        ids = {handle: handles[handle] for handle in without if handle in handles}
        if not whole_case:
            writes.keep_out_of_message(db, message_id, list(ids.values()))
            return []
        facts = access.load(db, [case_id])[case_id]
        mails: list[Mail] = []
        for handle, member_id in ids.items():
            if member_id in facts.kept_out:
                continue
            writes.set_recusal(db, case_id, member_id, "excl", now)
            writes.insert_events(db, [case_events.row(
                case_id, now, EventKind.KEPT_OUT, {"member": handle}, actor="reporter",
                message_id=message_id)])
            log.info("case #%d: the reporter keeps a member out of it", case_id)
            seat = facts.seat_of(member_id)
            if seat is not None:
                mails += stand_ins.after_stepping_back(
                    db, self.committee, self.enqueue, case_id, seat.handle,
                    self.enqueue.thread_roots(db, [case_id]), now)
        return mails

    def _mails(
        self, db: Connection, entries: list[Decided], message_ids: dict[int, int],
        seat: Seating,
        seats: dict[int, list[access.Seat]], paged: dict[int, list[str]],
    ) -> list[Mail]:
        """The mails the new messages cause. Automatic mail causes none (RFC 3834)."""
        joins = [e for e in entries if e.decision.action == "join" and not e.automatic]
        joined_cases = [e.decision.case_id for e in joins if e.decision.case_id is not None]
        facts = access.load(db, joined_cases)
        roots = self.enqueue.thread_roots(db, joined_cases)
        kept = access.kept_out_of(db, [message_ids[id(e)] for e in joins])
        mails: list[Mail] = []
        for entry in entries:
            if entry.automatic or entry.decision.action == "quarantine":
                continue
            case_id, participant_id = seat(entry)
            assert case_id is not None
            message_id = message_ids[id(entry)]
            if entry.decision.action == "open":
                assert entry.parsed is not None
                address = _reporter_address(entry, self.committee)
                reporter = (None if participant_id is None or address is None
                            else (participant_id, address))
                mails += opened_mails(case_id, message_id, reporter, seats.get(case_id, []),
                                      entry.parsed.message_id, entry.parsed.references,
                                      paged[id(entry)])
                continue
            case = facts[case_id]
            assert participant_id is not None
            if entry.decision.role == access.MEMBER_ROLE:
                assert entry.parsed is not None
                mails += self.replies.handle(db, entry.parsed, case, participant_id, message_id,
                                             roots, verified=entry.decision.verified,
                                             kept_out=kept.get(message_id, set()))
            else:
                mails += message_mails(case_id, message_id, participant_id, case.seats, roots,
                                       kept_out=kept.get(message_id, set()))
        return mails

    def _whom_to_page(self, db: Connection, opens: list[Decided],
                      roster: Sequence[members.RosterMember], handles: dict[str, int],
                      now: dt.datetime) -> dict[int, list[str]]:
        """For each new case (by ``id`` of its entry), whom it pages: the members on
        duty, or who stands in for one the reporter kept out. One look-up of who is
        on duty for the whole batch: they share "now"."""
        rotation = self.enqueue.rotation
        if rotation is None or not opens:
            return {id(entry): [] for entry in opens}
        pair = on_duty_now(db, rotation, now)
        pages: dict[int, list[str]] = {}
        for entry in opens:
            kept = {handles[h] for h in entry.decision.without if h in handles}
            seated = [m.handle for m in roster if not m.is_mediator and m.id not in kept]
            pages[id(entry)] = replace_unseated(pair, rotation, seated)
        return pages

    def _page_event(self, case_id: int, message_id: int, paged: list[str], members: bool,
                    now: dt.datetime) -> dict[str, object] | None:
        """Whom a new case paged, for its history, or that nobody could be (an error).
        None without a rotation when the case has members: nobody is on duty, and
        every member has the report."""
        if self.enqueue.rotation is None and members:
            return None
        if not paged:
            log.error("case #%d: nobody on duty could be paged", case_id)
        return case_events.row(case_id, now,
                               EventKind.PAGED if paged else EventKind.NOBODY_PAGED,
                               {"members": paged}, message_id=message_id)

    def _member_of(self, entry: Decided, roster: Sequence[members.RosterMember]) -> str | None:
        """The handle of the committee member who wrote ``entry``, if one did: by
        the one mailbox of its From, never by the envelope sender."""
        if entry.parsed is None:
            return None
        sender = original_sender(entry.parsed, self.committee.list_id)
        found = members.by_address(roster, sender) if sender else None
        return None if found is None or found.is_mediator else found.handle

    def _filed_for(self, entry: Decided,
                   roster: Sequence[members.RosterMember]) -> OnBehalf | None:
        """A member's filing of a report received elsewhere (``behalf.py``), or None:
        only from a member's own address, and not when our mail server says DKIM,
        SPF or DMARC failed for their domain (then it is a report like any other)."""
        if entry.parsed is None or entry.automatic:
            return None
        handle = self._member_of(entry, roster)
        member = member_of(roster, handle) if handle else None
        if member is None or failure(entry.parsed.headers, self.committee.authserv_ids,
                                     member.email) is not None:
            return None
        return read_filing(new_text(entry.parsed.text))


def _store_messages(db: Connection, entries: list[Decided], seat: Seating) -> dict[int, int]:
    """Insert the new messages (and their attachments), point the stored ones at
    their case; each message's id, by ``id`` of its entry."""
    new = [e for e in entries if not isinstance(e.message, int)]
    rows = []
    for entry in new:
        assert isinstance(entry.message, dict)
        case_id, participant_id = seat(entry)
        rows.append({**entry.message, "case_id": case_id, "participant_id": participant_id,
                     "verified": entry.decision.verified})
    message_ids = dict(zip(map(id, new), writes.insert_messages(db, rows), strict=True))
    for entry in entries:
        if isinstance(entry.message, int):
            message_ids[id(entry)] = entry.message
            case_id, participant_id = seat(entry)
            if case_id is not None:
                writes.set_message_case(db, entry.message, case_id, participant_id,
                                        entry.decision.verified)
    writes.insert_attachments(db, [
        {**row, "message_id": message_ids[id(e)]}
        for e in new if e.parsed is not None for row in attachment_rows(e.parsed)
    ])
    return message_ids


def _reporter_address(entry: Decided, committee: Committee) -> str | None:
    """Where a new report's acknowledgement goes: who wrote it, or, when its From
    names no one mailbox, the envelope sender (where an answer would go)."""
    assert entry.parsed is not None
    return original_sender(entry.parsed, committee.list_id) or _address(entry.envelope_from)


def _address(envelope_from: str | None) -> str | None:
    return mailbox(envelope_from) if envelope_from else None
