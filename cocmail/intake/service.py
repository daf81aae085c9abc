"""The intake service: one inbound message, one transaction.

Every way in (SMTP, LMTP, the pipe command, IMAP) hands raw bytes here.
``Intake.accept`` parses, routes and stores the message, its case changes and
its events in one unit of work (``intake/record.py`` writes them), and returns
only after the commit: the caller may then say "250". If the database fails,
``StoreUnavailable`` propagates and nothing of the message was kept; the caller
says "try again later". If anything else fails (a bug in parsing or routing),
the raw bytes are still stored and quarantined, so no report is ever lost to a
bug.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import replace

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from cocmail.case import members
from cocmail.case.events import EventKind
from cocmail.clock import Clock
from cocmail.config import Committee
from cocmail.errors import AddressError, StoreUnavailable
from cocmail.intake.inbound import (
    Accepted,
    Inbound,
    Prepared,
    Reading,
    attachment_rows,
    message_values,
    parsed_values,
)
from cocmail.intake.record import Decided, Recorder
from cocmail.notify.enqueue import Enqueue, Mail
from cocmail.parse.automatic import original_sender, why_automatic
from cocmail.parse.message import ParsedMessage, read
from cocmail.parse.text import clean
from cocmail.route import routing as route
from cocmail.route.addresses import Recipient, UnknownKeepOut, split_recipient
from cocmail.store import writes
from cocmail.store.db import Store
from cocmail.store.models import Event, Message, Participant, Quarantine

log = logging.getLogger(__name__)

# How long after a message a second delivery of it (an MTA that split its
# recipients, or retried) still means what it would have meant with the first:
# the days an MTA keeps retrying (Postfix: 5).
REDELIVERY_WINDOW = dt.timedelta(days=5)


class Intake:
    def __init__(
        self, store: Store, committee: Committee, key: bytes, clock: Clock, enqueue: Enqueue
    ) -> None:
        self.store = store
        self.committee = committee
        self.key = key
        self.clock = clock
        self.enqueue = enqueue
        self.recorder = Recorder(committee, clock, enqueue)

    def accept(self, delivery: Inbound) -> Accepted:
        """Store ``delivery``; return only once it is committed.

        Raises ``StoreUnavailable`` when the database cannot take it.
        """
        [result] = self.accept_batch([delivery])
        if isinstance(result, StoreUnavailable):
            raise result
        return result

    def accept_batch(
        self, deliveries: Sequence[Inbound]
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
        pending: list[tuple[int, Decided]] = []

        def write_pending() -> None:
            written = self.recorder.write(db, [w for _, w in pending])
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
            values = message_values(item.delivery, item.key, item.parsed, item.automatic,
                                    self.clock.now())
            pending.append((index, Decided(decision, item.parsed, item.delivery.envelope_from,
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
            mails += self.recorder.keep_out(db, found.case_id, message_id, whole_case, without,
                                            now)
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
                values = message_values(item.delivery, item.key, None, None, self.clock.now())
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
            for name, value in writes.seal_for_message(db, message.id, Message.__table__,
                                                       parsed_values(parsed)).items():
                setattr(message, name, value)
            writes.insert_attachments(
                db, [{**row, "message_id": message.id} for row in attachment_rows(parsed)])
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
            entry.detail = writes.seal_for_message(db, message.id, Quarantine.__table__, {
                "detail": clean(decision.detail or "")})["detail"]
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
        """Record ``decision`` for one message (``Recorder.write``)."""
        return self.recorder.write(
            db, [Decided(decision, parsed, envelope_from, message, automatic)])[0]

    def prepare(self, delivery: Inbound) -> Prepared:
        """What can be worked out before the transaction begins: it reads nothing
        of the store, so it may be done while another batch is stored."""
        reading = delivery.reading or Reading.of(delivery.raw)
        parsed = reading.parsed
        automatic = (why_automatic(parsed, delivery.envelope_from, self.committee.list_id)
                     if parsed is not None else None)
        return Prepared(delivery, reading.key, parsed, reading.parse_error, automatic)


def _looks_up(item: Prepared) -> bool:
    """Does routing ``item`` read the store (reply addresses, threading headers)?"""
    if item.parsed is None:
        return False
    return bool(item.parsed.thread_ids) or any(
        r.kind == "reply" for r in item.delivery.recipients)
