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

import hashlib
import logging
import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cocmail import route
from cocmail.addresses import Recipient, split_recipient
from cocmail.automatic import original_sender, why_automatic
from cocmail.clock import Clock
from cocmail.config import Committee
from cocmail.errors import AddressError, StoreUnavailable
from cocmail.parse import ParsedMessage, ParseError, clean, parse
from cocmail.store.db import Store
from cocmail.store.models import Attachment, Case, Event, Message, Participant, Quarantine

log = logging.getLogger(__name__)

# Header fields a transport adds on the way in. They differ between two
# deliveries of the same message (a retry, or SMTP and IMAP), so the dedupe key
# leaves them out.
_TRACE_FIELDS = frozenset({
    b"received", b"return-path", b"delivered-to", b"x-original-to", b"x-delivered-to",
    b"x-envelope-to", b"x-envelope-from", b"authentication-results", b"received-spf",
    b"arc-seal", b"arc-message-signature", b"arc-authentication-results",
})
_FIELD_NAME = re.compile(rb"([!-9;-~]+)[ \t]*:")


@dataclass(frozen=True)
class Delivery:
    """One message as a protocol edge received it."""

    raw: bytes
    envelope_from: str | None  # '' is the null sender; None when unknown (IMAP)
    recipients: tuple[Recipient, ...]
    channel: str  # smtp | lmtp | pipe | imap


@dataclass(frozen=True)
class Accepted:
    """What became of a message. ``duplicate`` is True when it was already stored."""

    message_id: int
    case_id: int | None
    opened: bool
    quarantine_reason: str | None
    duplicate: bool


def dedupe_key(raw: bytes) -> str:
    """sha256 of the message without trace header fields, line endings made LF.

    >>> a = b"Received: by a\\r\\nSubject: x\\r\\n\\r\\nhi\\r\\n"
    >>> b = b"Received: by b\\nReceived: by c\\nSubject: x\\n\\nhi\\n"
    >>> dedupe_key(a) == dedupe_key(b)
    True
    """
    text = raw.replace(b"\r\n", b"\n")
    head, sep, body = text.partition(b"\n\n")
    kept: list[bytes] = []
    skipping = False
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                kept.append(line)
            continue
        match = _FIELD_NAME.match(line)
        skipping = bool(match and match.group(1).lower() in _TRACE_FIELDS)
        if not skipping:
            kept.append(line)
    digest = hashlib.sha256()
    digest.update(b"\n".join(kept))
    digest.update(sep)
    digest.update(body)
    return digest.hexdigest()


class Intake:
    def __init__(self, store: Store, committee: Committee, key: bytes, clock: Clock) -> None:
        self.store = store
        self.committee = committee
        self.key = key
        self.clock = clock

    def accept(self, delivery: Delivery) -> Accepted:
        """Store ``delivery``; return only once it is committed.

        Raises ``StoreUnavailable`` when the database cannot take it.
        """
        key = dedupe_key(delivery.raw)
        try:
            parsed: ParsedMessage | None = parse(delivery.raw)
            parse_error = None
        except ParseError as exc:
            parsed, parse_error = None, str(exc)
        except Exception as exc:  # a bug or a pathological message: keep it all the same
            log.exception("parser failed on a message of %d bytes", len(delivery.raw))
            parsed, parse_error = None, f"parser failed: {type(exc).__name__}"

        try:
            with self.store.unit_of_work() as session:
                return self._store(session, delivery, key, parsed, parse_error)
        except IntegrityError:
            # The same message committed by a concurrent delivery between our
            # look-up and our insert.
            with self.store.unit_of_work() as session:
                found = _existing(session, key)
            if found is None:
                raise
            return found
        except StoreUnavailable:
            raise
        except Exception as exc:  # a bug in routing or storing: keep the message regardless
            log.exception("routing failed; quarantining the message")
            with self.store.unit_of_work() as session:
                found = _existing(session, key)
                if found is not None:
                    return found
                message = self._message_row(session, delivery, key, None)
                return self._quarantine(
                    session, message,
                    route.quarantine(route.INTERNAL_ERROR, f"routing failed: {type(exc).__name__}"),
                )

    def _store(
        self,
        session: Session,
        delivery: Delivery,
        key: str,
        parsed: ParsedMessage | None,
        parse_error: str | None,
    ) -> Accepted:
        found = _existing(session, key)
        if found is not None:
            return found
        message = self._message_row(session, delivery, key, parsed)
        decision = self._decide(session, message, parsed, parse_error, list(delivery.recipients))
        return self._apply(session, message, parsed, decision)

    def replay(self, session: Session, entry: Quarantine, *, open_case: bool = False) -> Accepted:
        """Route a quarantined message again (after a fix, or by an operator's decision
        with ``open_case``). Succeeds by releasing ``entry``; otherwise ``entry`` is
        updated with the new reason."""
        message = entry.message
        if message.raw is None:
            raise ValueError(f"message {message.id} has no raw bytes left (purged)")
        try:
            parsed: ParsedMessage | None = parse(message.raw)
            parse_error = None
        except ParseError as exc:
            parsed, parse_error = None, str(exc)
        if parsed is not None and message.headers is None:
            _fill_parsed(session, message, parsed)
        recipients = []
        for address in message.recipients:
            try:
                recipients.append(split_recipient(address, self.committee))
            except AddressError:
                continue
        if open_case:
            decision = route.Route("open") if parsed is not None else route.quarantine(
                route.UNPARSEABLE, parse_error or "unreadable")
        else:
            decision = self._decide(session, message, parsed, parse_error, recipients)
        now = self.clock.now()
        if decision.action == "quarantine":
            entry.reason = decision.reason or entry.reason
            entry.detail = clean(decision.detail or "")
            entry.claimed_case_id = decision.claimed_case_id
            return Accepted(message.id, None, False, entry.reason, False)
        entry.released_at = now
        result = self._apply(session, message, parsed, decision)
        entry.resolution = (f"opened case #{result.case_id}" if result.opened
                            else f"joined case #{result.case_id}")
        return result

    def _decide(
        self,
        session: Session,
        message: Message,
        parsed: ParsedMessage | None,
        parse_error: str | None,
        recipients: list[Recipient],
    ) -> route.Route:
        if parsed is None:
            return route.quarantine(route.UNPARSEABLE, parse_error or "unreadable")
        sender = original_sender(parsed, self.committee.list_id) or _address(message.envelope_from)
        automatic = why_automatic(parsed, message.envelope_from, self.committee.list_id)
        message.automatic = automatic
        return route.decide(session, parsed, sender, recipients, self.key, automatic)

    def _apply(
        self,
        session: Session,
        message: Message,
        parsed: ParsedMessage | None,
        decision: route.Route,
    ) -> Accepted:
        now = self.clock.now()
        if decision.action == "quarantine":
            return self._quarantine(session, message, decision)
        assert parsed is not None
        if decision.action == "open":
            sender = original_sender(parsed, self.committee.list_id) or _address(
                message.envelope_from)
            case = Case(state="new", channel="email", opened_at=now)
            session.add(case)
            session.flush()
            reporter = None
            if sender:
                reporter = Participant(
                    case_id=case.id, role="reporter", email=sender,
                    name=parsed.from_name if sender == parsed.from_address else None,
                    created_at=now,
                )
                session.add(reporter)
                session.flush()
            message.case_id = case.id
            message.participant_id = reporter.id if reporter else None
            session.flush()
            session.add(Event(case_id=case.id, at=now, kind="opened", actor="reporter",
                              message_id=message.id, data={"channel": "email"}))
            log.info("case #%d opened by message %d", case.id, message.id)
            return Accepted(message.id, case.id, True, None, False)
        assert decision.case_id is not None
        message.case_id = decision.case_id
        message.participant_id = decision.participant_id
        message.verified = decision.verified
        participant = (session.get(Participant, decision.participant_id)
                       if decision.participant_id else None)
        session.flush()
        session.add(Event(
            case_id=decision.case_id, at=now, kind="message",
            actor=participant.role if participant else "unknown", message_id=message.id,
            data={"verified": decision.verified, "automatic": bool(message.automatic)},
        ))
        log.info("message %d joined case #%d", message.id, decision.case_id)
        return Accepted(message.id, decision.case_id, False, None, False)

    def _message_row(
        self, session: Session, delivery: Delivery, key: str, parsed: ParsedMessage | None
    ) -> Message:
        raw = delivery.raw
        message = Message(
            direction="in",
            channel=delivery.channel,
            dedupe_key=key,
            raw_sha256=hashlib.sha256(raw).hexdigest(),
            raw_size=len(raw),
            raw=raw,
            envelope_from=delivery.envelope_from,
            recipients=[r.address for r in delivery.recipients],
            received_at=self.clock.now(),
            verified=False,
        )
        session.add(message)
        session.flush()
        if parsed is not None:
            _fill_parsed(session, message, parsed)
        return message

    def _quarantine(self, session: Session, message: Message, decision: route.Route) -> Accepted:
        assert decision.reason is not None
        session.add(Quarantine(
            message_id=message.id, reason=decision.reason, detail=clean(decision.detail or ""),
            claimed_case_id=decision.claimed_case_id, received_at=message.received_at,
        ))
        session.flush()
        log.info("message %d quarantined: %s", message.id, decision.reason)
        return Accepted(message.id, None, False, decision.reason, False)


def _fill_parsed(session: Session, message: Message, parsed: ParsedMessage) -> None:
    message.message_id = parsed.message_id
    message.in_reply_to = parsed.in_reply_to
    message.references = " ".join(parsed.references) or None
    message.from_address = parsed.from_address
    message.subject = parsed.subject
    message.sent_at = parsed.date
    message.headers = [[name, value] for name, value in parsed.headers]
    message.text = parsed.text
    message.html = parsed.html
    message.defects = list(parsed.defects) or None
    session.add_all(
        Attachment(message_id=message.id, part=a.part, filename=a.filename,
                   content_type=a.content_type, size=a.size, sha256=a.sha256)
        for a in parsed.attachments
    )


def _existing(session: Session, key: str) -> Accepted | None:
    row = session.execute(
        select(Message.id, Message.case_id).where(Message.dedupe_key == key)
    ).first()
    if row is None:
        return None
    reason = session.scalar(select(Quarantine.reason).where(Quarantine.message_id == row.id))
    return Accepted(row.id, row.case_id, False, reason, True)


def _address(envelope_from: str | None) -> str | None:
    if envelope_from and "@" in envelope_from:
        return envelope_from.strip().lower()
    return None
