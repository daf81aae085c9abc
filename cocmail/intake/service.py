"""The intake service: one inbound message, one transaction.

Every way in (SMTP, LMTP, the pipe command, later IMAP) hands raw bytes here.
``Intake.accept`` parses, routes and stores the message, its case changes and
its events in one unit of work, and returns only after the commit: the caller
may then say "250". If the database fails, ``StoreUnavailable`` propagates and
nothing of the message was kept; the caller says "try again later". If anything
else fails (a bug in parsing or routing), the raw bytes are still stored and
quarantined, so no report is ever lost to a bug.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from cocmail.case import access, members
from cocmail.case import events as case_events
from cocmail.case.events import EventKind
from cocmail.clock import Clock
from cocmail.commands.runner import MemberReplies
from cocmail.config import Committee
from cocmail.errors import AddressError, StoreUnavailable
from cocmail.notify.enqueue import (
    Enqueue,
    Mail,
    message_mails,
    opened_mails,
)
from cocmail.parse.auth_results import failure
from cocmail.parse.automatic import original_sender, why_automatic
from cocmail.parse.dedupe import dedupe_key
from cocmail.parse.message import ParsedMessage, clean, mailbox, read
from cocmail.parse.reply_text import new_text
from cocmail.route import routing as route
from cocmail.route.addresses import Recipient, UnknownKeepOut, split_recipient
from cocmail.route.behalf import OnBehalf
from cocmail.route.behalf import read as read_filing
from cocmail.schedule import stand_ins
from cocmail.schedule.roster import on_duty_now, replace_unseated
from cocmail.store import writes
from cocmail.store.db import Store
from cocmail.store.models import Event, Message, Participant, Quarantine

log = logging.getLogger(__name__)

# How long after a message a second delivery of it (an MTA that split its
# recipients, or retried) still means what it would have meant with the first:
# the days an MTA keeps retrying (Postfix: 5).
REDELIVERY_WINDOW = dt.timedelta(days=5)

@dataclass(frozen=True)
class Delivery:
    """One message as a protocol edge received it."""

    raw: bytes
    envelope_from: str | None  # '' is the null sender; None when unknown (IMAP)
    recipients: tuple[Recipient, ...]
    channel: str  # smtp | lmtp | pipe | imap
    # Read already by the edge, where it had the time (see ``Reading``); None: the
    # writer reads it.
    reading: Reading | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Reading:
    """What the intake reads off a message's bytes before its transaction: the
    dedupe key, and the parse or why it failed. The writer reads what comes
    unread; an edge with time to spare reads ahead (the IMAP poller, while the
    writer stores the group before), so that the two share the work on two cores."""

    key: str
    parsed: ParsedMessage | None
    parse_error: str | None

    @classmethod
    def of(cls, raw: bytes) -> Reading:
        parsed, parse_error = read(raw)
        return cls(dedupe_key(raw), parsed, parse_error)


@dataclass(frozen=True)
class Accepted:
    """What became of a message. ``duplicate`` is True when it was already stored."""

    message_id: int
    case_id: int | None
    opened: bool
    quarantine_reason: str | None
    duplicate: bool


class Intake:
    def __init__(
        self, store: Store, committee: Committee, key: bytes, clock: Clock, enqueue: Enqueue
    ) -> None:
        self.store = store
        self.committee = committee
        self.key = key
        self.clock = clock
        self.enqueue = enqueue
        self.replies = MemberReplies(committee, clock, enqueue)

    def accept(self, delivery: Delivery) -> Accepted:
        """Store ``delivery``; return only once it is committed.

        Raises ``StoreUnavailable`` when the database cannot take it.
        """
        [result] = self.accept_batch([delivery])
        if isinstance(result, StoreUnavailable):
            raise result
        return result

    def accept_batch(
        self, deliveries: Sequence[Delivery]
    ) -> list[Accepted | StoreUnavailable]:
        """Store several deliveries with one commit (group commit); return once it is done.

        If the database fails, nothing of the batch is kept and every delivery gets
        the ``StoreUnavailable``. If anything else fails (a bug, or a duplicate
        committed by another writer meanwhile), the batch is rolled back and each
        message is stored again in a transaction of its own, where a bug leaves the
        message stored raw and quarantined, until one cannot be stored at all.
        """
        return self.store_prepared([self.prepare(d) for d in deliveries])

    def store_prepared(
        self, prepared: Sequence[Prepared]
    ) -> list[Accepted | StoreUnavailable]:
        """``accept_batch`` for deliveries already ``prepare``d (the writer process
        prepares the next batch while this one commits)."""
        try:
            with self.store.transaction() as db:
                return list(self._store_all(db, list(prepared)))
        except StoreUnavailable as exc:
            return [exc] * len(prepared)
        except Exception:
            if len(prepared) > 1:
                log.warning("a batch of %d failed; storing its messages one by one",
                            len(prepared))
            results: list[Accepted | StoreUnavailable] = []
            for item in prepared:
                if results and isinstance(results[-1], StoreUnavailable):
                    # Once one could not be stored, none after it is: a later
                    # message (a reply) must not be stored before an earlier one
                    # (its report). They get the same answer, and come again.
                    results.append(results[-1])
                else:
                    results.append(self._store_alone(item))
            return results

    def _store_all(self, db: Connection, batch: list[Prepared]) -> list[Accepted]:
        stored = writes.find_messages(db, [item.key for item in batch])
        results: dict[int, Accepted] = {}
        first_of: dict[str, int] = {}  # key -> index of its first copy in this batch
        pending: list[tuple[int, _Write]] = []

        def write_pending() -> None:
            written = self._write(db, [w for _, w in pending])
            results.update(zip([i for i, _ in pending], written, strict=True))
            pending.clear()

        again: list[tuple[int, Prepared]] = []  # copies of stored messages, by message id
        for index, item in enumerate(batch):
            if item.key in stored:
                message_id, case_id, reason = stored[item.key]
                results[index] = Accepted(message_id, case_id, False, reason, True)
                again.append((message_id, item))
                continue
            if item.key in first_of:
                continue  # a second copy within the batch: answered below
            first_of[item.key] = index
            if pending and _looks_up(item):
                # Its routing reads the store: write what is pending first, so a
                # reply to a message of this same batch finds it.
                write_pending()
            decision = self._decide(db, item.parsed, item.parse_error, item.automatic,
                                    item.delivery.envelope_from, list(item.delivery.recipients),
                                    item.delivery.raw)
            values = self._message_values(item.delivery, item.key, item.parsed, item.automatic)
            pending.append((index, _Write(decision, item.parsed, item.delivery.envelope_from,
                                          values, item.automatic)))
        if pending:
            write_pending()
        for index, item in enumerate(batch):
            if index not in results:
                first = results[first_of[item.key]]
                results[index] = Accepted(first.message_id, first.case_id, False,
                                          first.quarantine_reason, True)
                again.append((first.message_id, item))
        if again:
            self._delivered_again(db, again)
        return [results[i] for i in range(len(batch))]

    def _delivered_again(self, db: Connection, copies: list[tuple[int, Prepared]]) -> None:
        """A message stored before came again, perhaps to more or other recipients:
        it keeps every recipient (a replay of it then sees them all), and a
        ``without-`` recipient keeps its member out as it would have the first time."""
        now = self.clock.now()
        mails: list[Mail] = []
        for message_id, item in copies:
            recipients = list(item.delivery.recipients)
            writes.add_recipients(db, message_id, [r.address for r in recipients])
            without = route.kept_out(recipients)
            if not without:
                continue
            found = db.execute(select(Message.case_id, Message.verified, Message.received_at,
                                      Participant.role).outerjoin(
                Participant, Participant.id == Message.participant_id).where(
                Message.id == message_id)).one()
            if found.case_id is None:
                continue
            opened = db.execute(select(Event.id).where(
                Event.case_id == found.case_id, Event.kind == EventKind.OPENED,
                Event.message_id == message_id)).first() is not None
            # The report itself, or the reporter's verified mail, to more recipients
            # within the days an MTA retries: as if they had come together, a
            # keep-out of the case. Otherwise (anyone may send bytes they were
            # given again) of this message only.
            whole_case = ((opened or (found.role == "reporter" and found.verified))
                          and now - found.received_at <= REDELIVERY_WINDOW)
            mails += self._keep_out(db, found.case_id, message_id, whole_case, without, now)
        self.enqueue.queue(db, mails, now)

    def _store_alone(self, item: Prepared) -> Accepted | StoreUnavailable:
        try:
            with self.store.transaction() as db:
                return self._store_all(db, [item])[0]
        except StoreUnavailable as exc:
            return exc
        except Exception as exc:
            # A copy committed by another writer since our look-up is found below;
            # anything else is a bug, and the message is kept all the same.
            failure = exc
        try:
            with self.store.transaction() as db:
                found = writes.find_messages(db, [item.key]).get(item.key)
                if found is not None:
                    return Accepted(found[0], found[1], False, found[2], True)
                log.error("routing failed; quarantining the message", exc_info=failure)
                error = route.quarantine(route.INTERNAL_ERROR,
                                         f"routing failed: {type(failure).__name__}")
                values = self._message_values(item.delivery, item.key, None, None)
                return self._apply(db, error, None, item.delivery.envelope_from, values, None)
        except StoreUnavailable as exc:
            return exc

    def replay(self, session: Session, entry: Quarantine, *, open_case: bool = False) -> Accepted:
        """Route a quarantined message again (after a fix, or by an operator's decision
        with ``open_case``). Success releases ``entry``; otherwise ``entry`` is
        updated with the new reason."""
        message = entry.message
        db = session.connection()
        if message.raw is None:
            raise ValueError(f"message {message.id} has no raw bytes left (purged)")
        parsed, parse_error = read(message.raw)
        if parsed is not None and message.headers is None:
            # It failed to parse before and parses now: keep what it says.
            for name, value in _parsed_values(parsed).items():
                setattr(message, name, value)
            writes.insert_attachments(
                db, [{**row, "message_id": message.id} for row in _attachment_rows(parsed)])
        recipients = []
        handles = members.keep_out_handles(db)
        for address in message.recipients:
            try:
                recipients.append(split_recipient(address, self.committee, handles))
            except UnknownKeepOut as exc:
                recipients.append(exc.recipient)  # it stays kept from everyone
            except AddressError:
                continue
        automatic = (why_automatic(parsed, message.envelope_from, self.committee.list_id)
                     if parsed is not None else None)
        if open_case and parsed is not None:
            decision = route.opening(recipients)
        else:
            decision = self._decide(db, parsed, parse_error, automatic,
                                    message.envelope_from, recipients, message.raw)
        if decision.action == "quarantine":
            entry.reason = decision.reason or entry.reason
            entry.detail = clean(decision.detail or "")
            entry.claimed_case_id = decision.claimed_case_id
            return Accepted(message.id, None, False, entry.reason, False)
        entry.released_at = self.clock.now()
        session.flush()
        result = self._apply(db, decision, parsed, message.envelope_from, message.id,
                             None if open_case else automatic)
        entry.resolution = (f"opened case #{result.case_id}" if result.opened
                            else f"joined case #{result.case_id}")
        return result

    def _decide(
        self,
        db: Connection,
        parsed: ParsedMessage | None,
        parse_error: str | None,
        automatic: str | None,
        envelope_from: str | None,
        recipients: list[Recipient],
        raw: bytes | None = None,
    ) -> route.Route:
        if parsed is None:
            decision = route.quarantine(route.UNPARSEABLE, parse_error or "unreadable")
        else:
            # Who wrote it, for threading and for a reply address: the one mailbox of
            # its From (the envelope sender is no substitute).
            sender = original_sender(parsed, self.committee.list_id)
            decision = route.decide(db, parsed, sender, recipients, self.key, automatic,
                                    self.committee.domain)
        if (decision.action == "quarantine" and decision.claimed_case_id is None
                and decision.reason in (route.AUTOMATIC, route.UNPARSEABLE) and raw):
            # A bounce or an auto-reply of mail about a case belongs to that case's
            # purge: it quotes what the case said.
            claimed = route.claimed_case(db, parsed, raw, self.key, self.committee.domain)
            if claimed is not None:
                decision = replace(decision, claimed_case_id=claimed)
        return decision

    def _apply(
        self,
        db: Connection,
        decision: route.Route,
        parsed: ParsedMessage | None,
        envelope_from: str | None,
        message: dict[str, object] | int,
        automatic: str | None,
    ) -> Accepted:
        """Record ``decision`` for one message (see ``_write``)."""
        return self._write(db, [_Write(decision, parsed, envelope_from, message, automatic)])[0]

    def _write(self, db: Connection, entries: list[_Write]) -> list[Accepted]:
        """Record routing decisions. Each entry's ``message`` is the new message's column
        values (inserted here, already pointing at its case) or the id of a stored
        message. Rows of one kind are written by one statement for the whole list."""
        now = self.clock.now()
        opens = [e for e in entries if e.decision.action == "open"]
        roster = members.roster(db) if opens else []
        handles = members.handles(db) if any(e.decision.without for e in entries) else {}
        filed = {id(e): self._filed_for(e, roster) for e in opens}
        case_ids = dict(zip(map(id, opens), writes.insert_cases(
            db, [f.channel if f else "email" for f in filed.values()], now), strict=True))
        # Each new case seats its reporter and every member of the committee (a
        # member who joins later gets a seat, not yet cleared, from the sweep).
        # Whom it pages is decided first, so that their seats are written cleared.
        paged = self._whom_to_page(db, opens, roster, handles, now)
        seated: list[tuple[_Write, dict[str, object]]] = []
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
        addresses = {member.id: member.email for member in roster}
        writes.keep_out_of_cases(db, [
            (case_ids[id(entry)], handles[handle])
            for entry in opens for handle in entry.decision.without if handle in handles], now)
        participant_ids: dict[int, int] = {}  # id(entry) -> its reporter's participant id
        seats: dict[int, list[access.Seat]] = {}  # case id -> the members' seats
        for (entry, row), pid in zip(
                seated, writes.insert_participants(db, [row for _, row in seated]), strict=True):
            if row["role"] == "reporter":
                participant_ids[id(entry)] = pid
            elif row["role"] == access.MEMBER_ROLE:
                member_id = int(str(row["member_id"]))
                seats.setdefault(case_ids[id(entry)], []).append(access.Seat(
                    pid, member_id, str(row["handle"]), addresses[member_id],
                    access.Standing.READS if writes.seat_cleared(row)
                    else access.Standing.PENDING))

        def seat(entry: _Write) -> tuple[int | None, int | None]:
            if entry.decision.action == "open":
                return case_ids[id(entry)], participant_ids.get(id(entry))
            return entry.decision.case_id, entry.decision.participant_id

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
            for e in new if e.parsed is not None for row in _attachment_rows(e.parsed)
        ])
        # A keep-out in mail to a case: the member is kept out of the case (from its
        # reporter) or from this message (from anyone else), before its mail is made.
        stand_ins: list[Mail] = []
        for entry in entries:
            if entry.decision.action == "join" and entry.decision.without:
                assert entry.decision.case_id is not None
                # Of the case only from its reporter at her own reply address: mail
                # threaded by headers proves nothing of who sent it.
                whole_case = entry.decision.role == "reporter" and entry.decision.verified
                stand_ins += self._keep_out(db, entry.decision.case_id, message_ids[id(entry)],
                                            whole_case, entry.decision.without, now)

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
            opened = decision.action == "open"
            on_behalf = filed.get(id(entry)) if opened else None
            events.append(case_events.row(
                case_id, now, EventKind.OPENED if opened else EventKind.MESSAGE,
                ({"channel": on_behalf.channel if on_behalf else "email",
                  "without": list(decision.without),
                  **({"on_behalf_of": on_behalf.reporter or "anonymous",
                      "filed_by": self._member_of(entry, roster)} if on_behalf else {})}
                 if opened else {"verified": decision.verified}),
                actor="reporter" if opened else decision.role or "unknown",
                message_id=message_id))
            if opened and not entry.automatic:  # automatic mail pages nobody (see _mails)
                page = self._page_event(case_id, message_id, paged[id(entry)],
                                        bool(seats.get(case_id)), now)
                if page is not None:
                    events.append(page)
            log.info("message %d %s case #%d", message_id, "opened" if opened else "joined",
                     case_id)
            results.append(Accepted(message_id, case_id, opened, None, False))
        writes.insert_events(db, events)
        writes.insert_quarantines(db, quarantined)
        self.enqueue.queue(db, stand_ins + self._mails(db, entries, message_ids, seat, seats,
                                                       paged), now)
        return results

    def _keep_out(self, db: Connection, case_id: int, message_id: int, whole_case: bool,
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
        self, db: Connection, entries: list[_Write], message_ids: dict[int, int],
        seat: Callable[[_Write], tuple[int | None, int | None]],
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

    def _whom_to_page(self, db: Connection, opens: list[_Write],
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

    def _member_of(self, entry: _Write, roster: Sequence[members.RosterMember]) -> str | None:
        """The handle of the committee member who wrote ``entry``, if one did: by
        the one mailbox of its From, never by the envelope sender."""
        if entry.parsed is None:
            return None
        sender = original_sender(entry.parsed, self.committee.list_id)
        found = members.by_address(roster, sender) if sender else None
        return None if found is None or found.is_mediator else found.handle

    def _filed_for(self, entry: _Write,
                   roster: Sequence[members.RosterMember]) -> OnBehalf | None:
        """A member's filing of a report received elsewhere (``behalf.py``), or None:
        only from a member's own address, and not when our mail server says DKIM,
        SPF or DMARC failed for their domain (then it is a report like any other)."""
        if entry.parsed is None or entry.automatic:
            return None
        handle = self._member_of(entry, roster)
        member = next((m for m in roster if m.handle == handle), None)
        if member is None or failure(entry.parsed.headers, self.committee.authserv_ids,
                                     member.email) is not None:
            return None
        return read_filing(new_text(entry.parsed.text))

    def prepare(self, delivery: Delivery) -> Prepared:
        """What can be worked out before the transaction begins: it reads nothing
        of the store, so it may be done while another batch is stored."""
        reading = delivery.reading or Reading.of(delivery.raw)
        parsed = reading.parsed
        automatic = (why_automatic(parsed, delivery.envelope_from, self.committee.list_id)
                     if parsed is not None else None)
        return Prepared(delivery, reading.key, parsed, reading.parse_error, automatic)

    def _message_values(
        self, delivery: Delivery, key: str, parsed: ParsedMessage | None, automatic: str | None
    ) -> dict[str, object]:
        raw = delivery.raw
        values: dict[str, object] = {
            "direction": "in",
            "channel": delivery.channel,
            "dedupe_key": key,
            "raw_sha256": hashlib.sha256(raw).hexdigest(),
            "raw_size": len(raw),
            "raw": raw,
            # Kept as given, cut to the column's size (a longer one is no address).
            "envelope_from": (None if delivery.envelope_from is None
                              else delivery.envelope_from[:320]),
            "recipients": [r.address for r in delivery.recipients],
            "received_at": self.clock.now(),
            "verified": False,
        }
        if parsed is not None:
            values.update(_parsed_values(parsed))
            values["automatic"] = automatic
        return values


@dataclass(frozen=True)
class Prepared:
    """A delivery with what can be worked out before the transaction begins."""

    delivery: Delivery
    key: str
    parsed: ParsedMessage | None
    parse_error: str | None
    automatic: str | None  # why it is automatic (RFC 3834), if it is


@dataclass(frozen=True, eq=False)
class _Write:
    """One routing decision waiting to be written (compared by identity)."""

    decision: route.Route
    parsed: ParsedMessage | None
    envelope_from: str | None
    message: dict[str, object] | int
    automatic: str | None  # why it is automatic: then it causes no mail


def _looks_up(item: Prepared) -> bool:
    """Does routing ``item`` read the store (reply addresses, threading headers)?"""
    if item.parsed is None:
        return False
    return bool(item.parsed.thread_ids) or any(
        r.kind == "reply" for r in item.delivery.recipients)


def _parsed_values(parsed: ParsedMessage) -> dict[str, object]:
    return {
        "message_id": parsed.message_id,
        "in_reply_to": parsed.in_reply_to,
        "references": " ".join(parsed.references) or None,
        "from_address": parsed.from_address,
        "subject": parsed.subject,
        "sent_at": parsed.date,
        "headers": [[name, value] for name, value in parsed.headers],
        "text": parsed.text,
        "html": parsed.html,
        "defects": list(parsed.defects) or None,
    }


def _attachment_rows(parsed: ParsedMessage) -> list[dict[str, object]]:
    return [
        {"part": a.part, "filename": a.filename, "content_type": a.content_type,
         "size": a.size, "sha256": a.sha256}
        for a in parsed.attachments
    ]


def _reporter_address(entry: _Write, committee: Committee) -> str | None:
    """Where a new report's acknowledgement goes: who wrote it, or, when its From
    names no one mailbox, the envelope sender (where an answer would go)."""
    assert entry.parsed is not None
    return original_sender(entry.parsed, committee.list_id) or _address(entry.envelope_from)


def _address(envelope_from: str | None) -> str | None:
    return mailbox(envelope_from) if envelope_from else None
