"""Which mails a change causes, queued as outbox rows in the change's own transaction.

Every mail has a key (case, kind, step, recipient). A second attempt to queue the
same mail (a replay, a second replica doing the same work) is skipped by the
database's unique index, so it goes out once. The Message-ID is made here and
never changes: a retry sends the same message.

Who gets what is ``case/access.py``'s to say: the mails here go to the seats it
names (the readers of a case, those still to answer its conflict check), and
the worker asks it again when each mail is sent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from cocmail.case import access
from cocmail.case.access import Seat
from cocmail.config import Committee, Config, Rotation
from cocmail.notify import payloads
from cocmail.notify.kinds import ACK, CONFLICT, KINDS, MESSAGE, NOTICE, PAGE, REPORT
from cocmail.notify.payloads import Payload
from cocmail.route.tokens import make_message_id
from cocmail.store import writes
from cocmail.store.models import Outbox

# Kinds that answer a message someone sent: rate-limited per address (RFC 3834).
ANSWERS = tuple(k.name for k in KINDS.values() if k.answers)


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
    payload: Payload = field(default_factory=Payload)  # of the kind's type (``KINDS``)
    held: bool = False  # written "held": sent only once released (a relay's approval)

    def __post_init__(self) -> None:
        wanted = KINDS[self.kind].payload
        if type(self.payload) is not wanted:
            raise TypeError(f"a {self.kind} mail carries {wanted.__name__}, "
                            f"not {type(self.payload).__name__}")
        # One spelling per address, so the unique key and the per-address limit
        # see "Rita@Example.net" and "rita@example.net" as one (an index lookup).
        object.__setattr__(self, "recipient", self.recipient.lower())

    @property
    def key(self) -> str:
        """(case, kind, step): ``writes.insert_outbox`` adds the recipient's keyed hash."""
        return writes.outbox_key(self.case_id, self.kind, self.step)


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
        writes.insert_outbox(db, [
            {"key": mail.key, "case_id": mail.case_id, "kind": mail.kind, "step": mail.step,
             "recipient": mail.recipient, "participant_id": mail.participant_id,
             "source_message_id": mail.source_message_id,
             "message_id": make_message_id(self.key, mail.case_id, domain),
             "in_reply_to": mail.in_reply_to, "references": mail.references,
             "data": mail.payload.to_json(), "status": "held" if mail.held else "queued",
             "created_at": now, "due_at": now,
             "attempts": 0, "priority": KINDS[mail.kind].priority}
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
                                 payload=payloads.AnswerLimit(self.answers_per_day)))
        return kept

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
                     payload: payloads.Conflict | None = None) -> list[Mail]:
    """The conflict check, to each member of ``seats`` still to answer it: the case
    number and the parties named so far (read when sent), never its content."""
    return [Mail(CONFLICT, seat.email, case_id, step=step, participant_id=seat.participant_id,
                 payload=payload or payloads.Conflict())
            for seat in access.pending(seats)]


def opened_mails(
    case_id: int, message_id: int, reporter: tuple[int, str] | None, seats: list[Seat],
    their_message_id: str | None, their_references: tuple[str, ...], paged: Sequence[str],
) -> list[Mail]:
    """A new case: the acknowledgement to its reporter (in their thread), a page to
    the members on duty (``paged``), the report to the other members who may read
    it and the conflict check to those still to answer it."""
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
                   payload=payloads.OnDuty(list(paged)))
              for seat in access.readers(seats)]
    return mails + conflict_notices(case_id, seats, "opened")


def message_mails(
    case_id: int, message_id: int, sender_participant_id: int | None, seats: Iterable[Seat],
    roots: dict[int, str], note: str | None = None, kept_out: Collection[int] = (),
) -> list[Mail]:
    """A new message in a case: to every member who may read it, except its sender
    (and those it is kept from, ``kept_out``)."""
    mails = []
    for seat in access.readers(seats, kept_out):
        if seat.participant_id == sender_participant_id:
            continue
        root = roots.get(seat.participant_id)
        mails.append(Mail(MESSAGE, seat.email, case_id, step=str(message_id),
                          participant_id=seat.participant_id, source_message_id=message_id,
                          in_reply_to=root, references=root,
                          payload=payloads.Note(note)))
    return mails
