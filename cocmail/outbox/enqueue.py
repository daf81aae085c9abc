"""Which mails a change causes, queued as outbox rows in the change's own transaction.

Every mail has a key (case, kind, step, recipient). A second attempt to queue the
same mail (a replay, a second replica doing the same work) is skipped by the
database's unique index, so it goes out once. The Message-ID is made here and
never changes: a retry sends the same message.

Who gets case mail is decided here and checked again when it is sent: members
with a seat in the case who are cleared to read it (they triage it, or answered
"no-conflict") and have not recused from it. A member not yet cleared gets only
conflict-check notices: the case number and the parties, never the report. The
reporter gets only what is addressed to them (the acknowledgement), never the
committee's traffic.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from cocmail.config import Committee, Config, Rotation
from cocmail.store import writes
from cocmail.store.models import Outbox, Participant, Recusal
from cocmail.tokens import make_message_id

# Kinds (the X-Cocmail-Kind header; DESIGN.md lists them all).
ACK = "ack"  # to the reporter: we have your report
REPORT = "report"  # a new report, to each member not on triage duty
PAGE = "page"  # a new report, to the two members on triage duty: the report, and "ack"
MESSAGE = "message"  # a new message in a case, to the members
FAILURE = "failure"  # a mail to an outside party failed for good, to the members
NOTICE = "notice"  # to one address: no more automatic answers today
CONFIRMATION = "confirmation"  # to a member: what their reply's commands did
STATUS = "status"  # to the members: a change in a case (acknowledged by …)
DIGEST = "digest"  # to each member, daily: open cases and mail that failed for good
ESCALATION = "escalation"  # to members: a case nobody acknowledged, or one marked critical
HANDOFF = "handoff"  # to the outgoing and incoming pair: duty changed hands, what is waiting
REMINDER = "reminder"  # to the members of a case: a follow-up someone set is due
CONFLICT = "conflict"  # to a member not yet cleared: the case number and parties, no content
CASEFILE = "casefile"  # to a member just cleared (no-conflict, the mediator): the case so far
RELAY = "relay"  # to a party: a member's message, sent as the committee's representative

# Who must hear first when mail queues up: the reporter's acknowledgement and the
# triagers' pages, then escalations, then the rest (the outbox's ``priority``).
PRIORITY = {ACK: 0, PAGE: 0, ESCALATION: 1, CONFLICT: 1}

# Kinds that answer a message someone sent: rate-limited per address (RFC 3834).
ANSWERS = (ACK,)
# Kinds that carry case content: only to members who may see the case.
CASE_CONTENT = (REPORT, PAGE, MESSAGE, FAILURE, STATUS, ESCALATION, REMINDER, CASEFILE)


@dataclass(frozen=True)
class Mail:
    """One mail to queue. Its text is rendered from the ``kind`` template when sent."""

    kind: str
    recipient: str
    case_id: int | None = None
    step: str = ""
    participant_id: int | None = None
    source_message_id: int | None = None
    in_reply_to: str | None = None
    references: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    held: bool = False  # written "held": sent only once released (a relay's approval)

    def __post_init__(self) -> None:
        # One spelling per address, so the unique key and the per-address limit
        # see "Rita@Example.net" and "rita@example.net" as one (an index lookup).
        object.__setattr__(self, "recipient", self.recipient.lower())

    @property
    def key(self) -> str:
        case = "-" if self.case_id is None else str(self.case_id)
        return f"{case}:{self.kind}:{self.step}:{self.recipient}"


@dataclass(frozen=True)
class Seat:
    """A member's seat in a case, as read from the store."""

    participant_id: int
    email: str
    handle: str | None
    cleared: bool = True  # may read the case (False: conflict-check notices only)


class Enqueue:
    """Writes outbox rows; one per process, shared by every transaction."""

    def __init__(self, key: bytes, committee: Committee, answers_per_day: int,
                 rotation: Rotation | None = None) -> None:
        self.key = key
        self.committee = committee
        self.answers_per_day = answers_per_day
        self.rotation = rotation

    @classmethod
    def for_config(cls, config: Config, key: bytes) -> Enqueue:
        return cls(key, config.committee, config.delivery.answers_per_day, config.rotation)

    def queue(self, db: Connection, mails: Iterable[Mail], now: dt.datetime) -> None:
        """Write ``mails`` (due at once). Answers to a sender over the day's limit are
        replaced by one notice that says so."""
        mails = self._limit_answers(db, list(mails), now)
        domain = self.committee.domain
        writes.insert_ignoring_duplicates(db, Outbox.__table__, [
            {"key": mail.key, "case_id": mail.case_id, "kind": mail.kind, "step": mail.step,
             "recipient": mail.recipient, "participant_id": mail.participant_id,
             "source_message_id": mail.source_message_id,
             "message_id": make_message_id(self.key, mail.case_id, domain),
             "in_reply_to": mail.in_reply_to, "references": mail.references,
             "data": mail.data, "status": "held" if mail.held else "queued",
             "created_at": now, "due_at": now,
             "attempts": 0, "priority": PRIORITY.get(mail.kind, 2)}
            for mail in mails
        ])

    def _limit_answers(self, db: Connection, mails: list[Mail], now: dt.datetime) -> list[Mail]:
        answers = {m.recipient for m in mails if m.kind in ANSWERS}
        if not answers:
            return mails
        since = now - dt.timedelta(days=1)
        sent: dict[str, int] = {}
        told: set[str] = set()
        for recipient, kind in writes.recent_mail(db, sorted(answers), (*ANSWERS, NOTICE),
                                                  since):
            if kind == NOTICE:
                told.add(recipient)
            else:
                sent[recipient] = sent.get(recipient, 0) + 1
        kept = []
        for mail in mails:
            address = mail.recipient
            if mail.kind not in ANSWERS:
                kept.append(mail)
            elif sent.get(address, 0) < self.answers_per_day:
                sent[address] = sent.get(address, 0) + 1
                kept.append(mail)
            elif address not in told:
                told.add(address)
                kept.append(Mail(NOTICE, mail.recipient, step=f"answer-limit:{now.date()}",
                                 in_reply_to=mail.in_reply_to, references=mail.references,
                                 data={"limit": self.answers_per_day}))
        return kept

    def member_seats(self, db: Connection, case_ids: Iterable[int],
                     pending: bool = False) -> dict[int, list[Seat]]:
        """The members who may see each case: a seat in it, cleared, and no recusal.
        With ``pending``, also the seats not yet cleared (``Seat.cleared`` False):
        those who are still to answer the conflict check."""
        case_ids = sorted(set(case_ids))
        if not case_ids:
            return {}
        recused = {(case_id, handle) for case_id, handle in db.execute(
            select(Recusal.case_id, Recusal.handle).where(
                Recusal.case_id.in_(case_ids), Recusal.kind.in_(("hard", "excl"))))}
        seats: dict[int, list[Seat]] = {case_id: [] for case_id in case_ids}
        for row in db.execute(
            select(Participant.case_id, Participant.id, Participant.email, Participant.handle,
                   Participant.cleared_at)
            .where(Participant.case_id.in_(case_ids), Participant.role == "member")
            .order_by(Participant.id)
        ):
            cleared = row.cleared_at is not None
            if (row.case_id, row.handle) not in recused and (cleared or pending):
                seats[row.case_id].append(Seat(row.id, row.email, row.handle, cleared))
        return seats

    def thread_roots(self, db: Connection, case_ids: Iterable[int]) -> dict[int, str]:
        """For each participant, the Message-ID of the first mail they got about their
        case: later mails answer it, so each recipient sees one thread per case."""
        case_ids = sorted(set(case_ids))
        if not case_ids:
            return {}
        first = (select(func.min(Outbox.id)).where(
            Outbox.case_id.in_(case_ids), Outbox.participant_id.is_not(None))
            .group_by(Outbox.participant_id))
        return {participant_id: message_id for participant_id, message_id in db.execute(
            select(Outbox.participant_id, Outbox.message_id).where(Outbox.id.in_(first))
        ) if participant_id is not None}


def conflict_notices(case_id: int, seats: Iterable[Seat], step: str,
                     **data: Any) -> list[Mail]:
    """The conflict check, to each member of ``seats`` not yet cleared: the case
    number and the parties named so far (read when sent), never its content."""
    return [Mail(CONFLICT, seat.email, case_id, step=step, participant_id=seat.participant_id,
                 data=data)
            for seat in seats if not seat.cleared]


def opened_mails(
    case_id: int, message_id: int, reporter: tuple[int, str] | None, seats: list[Seat],
    their_message_id: str | None, their_references: tuple[str, ...], paged: Sequence[str],
) -> list[Mail]:
    """A new case: the acknowledgement to its reporter (in their thread), a page to
    the members on duty (``paged``), the report to the other members cleared to
    read it and the conflict check to those who are not."""
    mails = []
    if reporter is not None:
        participant_id, email = reporter
        # Stored ids are bare (without <>), as parse.message_ids gives them.
        references = [*their_references, their_message_id] if their_message_id else []
        mails.append(Mail(ACK, email, case_id, participant_id=participant_id,
                          source_message_id=message_id,
                          in_reply_to=f"<{their_message_id}>" if their_message_id else None,
                          references=" ".join(f"<{r}>" for r in references) or None))
    mails += [Mail(PAGE if seat.handle in paged else REPORT, seat.email, case_id,
                   participant_id=seat.participant_id, source_message_id=message_id,
                   data={"on_duty": list(paged)})
              for seat in seats if seat.cleared]
    return mails + conflict_notices(case_id, seats, "opened")


def message_mails(
    case_id: int, message_id: int, sender_participant_id: int | None, seats: list[Seat],
    roots: dict[int, str], note: str | None = None,
) -> list[Mail]:
    """A new message in a case: to every member who may see it, except its sender."""
    mails = []
    for seat in seats:
        if seat.participant_id == sender_participant_id:
            continue
        root = roots.get(seat.participant_id)
        mails.append(Mail(MESSAGE, seat.email, case_id, step=str(message_id),
                          participant_id=seat.participant_id, source_message_id=message_id,
                          in_reply_to=root, references=root,
                          data={} if note is None else {"note": note}))
    return mails
