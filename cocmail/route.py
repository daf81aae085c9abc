"""Where an inbound message belongs: a new case, an existing case, or the quarantine.

The order is fixed by DESIGN.md: a verified token address; then
In-Reply-To/References that name a stored message of a case, or a mail cocmail
sent about it (its Message-ID carries the signed case id), but only when the
sender is a participant of that case; otherwise a new case. A subject tag alone
never moves mail into a case. Automatic mail to the bare address opens nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.engine import Connection

from cocmail.addresses import Recipient
from cocmail.parse import ParsedMessage
from cocmail.store.models import Case, Message, Participant
from cocmail.tokens import case_of_message_id, match_token

# Quarantine reasons: stable codes (they appear in `quarantine list --json`).
AUTOMATIC = "automatic"
UNPARSEABLE = "unparseable"
UNKNOWN_CASE = "unknown-case"
BAD_TOKEN = "bad-token"
SENDER_MISMATCH = "sender-mismatch"
INTERNAL_ERROR = "internal-error"


@dataclass(frozen=True)
class Route:
    action: str  # "open" | "join" | "quarantine"
    case_id: int | None = None
    participant_id: int | None = None
    verified: bool = False
    role: str | None = None  # the sender's seat in the case, when it joins one
    reason: str | None = None
    detail: str | None = None
    claimed_case_id: int | None = None
    without: tuple[str, ...] = ()  # members the reporter keeps out of the case it opens


def quarantine(reason: str, detail: str, claimed_case_id: int | None = None) -> Route:
    return Route("quarantine", reason=reason, detail=detail, claimed_case_id=claimed_case_id)


def decide(
    db: Connection,
    message: ParsedMessage,
    sender: str | None,
    recipients: list[Recipient],
    key: bytes,
    automatic: str | None,
    domain: str,
) -> Route:
    """Route one parsed message. ``sender`` is who wrote it (see
    ``automatic.original_sender``), ``automatic`` why it is automatic, if it is."""
    replies = [r for r in recipients if r.kind == "reply"]
    if replies:
        return _by_token(db, replies[0], sender, key)
    if automatic:
        return quarantine(AUTOMATIC, f"automatic message to the conduct address: {automatic}")
    threaded = _by_headers(db, message, sender, key, domain)
    return threaded or opening(recipients)


def opening(recipients: list[Recipient]) -> Route:
    """A new case, keeping out the members named by ``without-`` addresses."""
    return Route("open", without=tuple(sorted({r.without for r in recipients if r.without})))


def _by_token(db: Connection, recipient: Recipient, sender: str | None, key: bytes) -> Route:
    assert recipient.case_id is not None and recipient.token is not None
    case_id = recipient.case_id
    if db.execute(select(Case.id).where(Case.id == case_id)).first() is None:
        return quarantine(
            UNKNOWN_CASE, f"reply address names case #{case_id}, which does not exist"
        )
    participants = db.execute(
        select(Participant.id, Participant.email, Participant.role).where(
            Participant.case_id == case_id)
    ).all()
    pid = match_token(key, case_id, recipient.token, [p.id for p in participants])
    if pid is None:
        return quarantine(
            BAD_TOKEN,
            f"the reply address for case #{case_id} does not verify (forged or mistyped)",
            claimed_case_id=case_id,
        )
    participant = next(p for p in participants if p.id == pid)
    if sender is None or sender != participant.email.lower():
        return quarantine(
            SENDER_MISMATCH,
            f"sent to the reply address of the case's {participant.role}, "
            "but not from that participant's address",
            claimed_case_id=case_id,
        )
    return Route("join", case_id=case_id, participant_id=participant.id, verified=True,
                 role=participant.role)


def _by_headers(
    db: Connection, message: ParsedMessage, sender: str | None, key: bytes, domain: str
) -> Route | None:
    ids = message.thread_ids
    if not ids or sender is None:
        return None
    rows = db.execute(
        select(Message.message_id, Message.case_id).where(
            Message.message_id.in_(ids), Message.case_id.is_not(None)
        )
    ).all()
    case_of: dict[str, int | None] = {mid: case_id for mid, case_id in rows if mid}
    for mid in ids:
        signed = case_of_message_id(key, mid, domain)
        if signed is not None:
            case_of[mid] = signed
    for mid in ids:  # nearest first
        case_id = case_of.get(mid)
        if case_id is None:
            continue
        participant = db.execute(
            select(Participant.id, Participant.role).where(
                Participant.case_id == case_id, Participant.email == sender
            ).order_by(Participant.id)
        ).first()
        if participant is not None:
            return Route("join", case_id=case_id, participant_id=participant.id,
                         role=participant.role)
    return None
