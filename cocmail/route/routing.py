"""Where an inbound message belongs: a new case, an existing case, or the quarantine.

The order is fixed by DESIGN.md: a verified token address; then
In-Reply-To/References that name a stored message of a case, or a mail cocmail
sent about it (its Message-ID carries the signed case id), but only when the
sender is a participant of that case; otherwise a new case. A subject tag alone
never moves mail into a case. Automatic mail to the bare address opens nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.engine import Connection

from cocmail.case import access
from cocmail.parse.message import ParsedMessage
from cocmail.route.addresses import Recipient
from cocmail.route.tokens import case_named_in, case_of_message_id, match_token
from cocmail.store import writes
from cocmail.store.models import Case, Member, Message, Participant

# Quarantine reasons: stable codes (they appear in `quarantine list --json`).
AUTOMATIC = "automatic"
UNPARSEABLE = "unparseable"
UNKNOWN_CASE = "unknown-case"
BAD_TOKEN = "bad-token"
SENDER_MISMATCH = "sender-mismatch"
NOT_A_MEMBER = "not-a-member"
UNKNOWN_KEEP_OUT = "unknown-keep-out"
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
    # Members named by ``without-`` recipients: kept out of the case a reporter
    # opens or writes to, kept from this message when someone else sends it.
    without: tuple[str, ...] = ()


def _is_from(db: Connection, sender: str) -> Any:
    """Is ``sender`` the participant's address? A member's is their identity's
    (``members.email``), which may change; anyone else's is their seat's, matched
    by its keyed hash (``participants.email_index``). (Joins ``Member``.)"""
    return or_(Member.email == sender, and_(
        Member.email.is_(None), Participant.email_index == writes.participant_index(db, sender)))


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
    ``automatic.original_sender``), ``automatic`` why it is automatic, if it is.
    A reply address proves a participant only with the one mailbox of the From
    field: never a header a group in front of us would have set (a forged
    List-Id would make it believed), never the envelope sender."""
    refused = _unknown_keep_out(recipients)
    if refused is not None:
        return refused
    replies = [r for r in recipients if r.kind == "reply"]
    without = kept_out(recipients)
    if replies:
        found = _by_token(db, replies[0], message.from_address, key)
    elif automatic:
        return quarantine(AUTOMATIC, f"automatic message to the conduct address: {automatic}")
    else:
        found = _by_headers(db, message, sender, key, domain) or opening(recipients)
    if found.action == "join" and without:
        # A keep-out wins over every other route into the case.
        found = replace(found, without=without)
    return found


def kept_out(recipients: list[Recipient]) -> tuple[str, ...]:
    """The handles ``without-`` recipients name (of members, known or not)."""
    return tuple(sorted({r.without for r in recipients if r.without}))


def opening(recipients: list[Recipient]) -> Route:
    """A new case, keeping out the members named by ``without-`` addresses."""
    return _unknown_keep_out(recipients) or Route("open", without=kept_out(recipients))


def _unknown_keep_out(recipients: list[Recipient]) -> Route | None:
    """Whoever wrote to a keep-out address of no member wanted someone kept out,
    and nobody can tell whom: the message is kept and shown to nobody (over
    SMTP it is refused instead, so the sender can send it again)."""
    unknown = sorted({r.without or "" for r in recipients if r.unknown})
    if not unknown:
        return None
    return quarantine(UNKNOWN_KEEP_OUT, "sent to a keep-out address of no committee member "
                      f"({', '.join(unknown)}): kept, shown to nobody")


def _removed(db: Connection, case_id: int, participant_id: int) -> bool:
    """Is this a member's seat that no longer acts (they left the roster)?"""
    seat = access.load(db, [case_id])[case_id].seat(participant_id)
    return seat is not None and seat.standing is access.Standing.REMOVED


def claimed_case(db: Connection, message: ParsedMessage | None, raw: bytes, key: bytes,
                 domain: str) -> int | None:
    """The case a message that joins none is about, if it says: a Message-ID it
    answers (one stored with a case, or one of ours), or one of ours quoted in it
    (a bounce carries the mail it bounces). Its quarantine entry then claims the
    case, and a purge of the case removes it too."""
    ids = message.thread_ids if message is not None else ()
    if ids:
        stored = {mid: case_id for mid, case_id in db.execute(
            select(Message.message_id, Message.case_id).where(
                Message.message_id.in_(ids), Message.case_id.is_not(None)))}
        for mid in ids:
            found = stored.get(mid) or case_of_message_id(key, mid, domain)
            if found is not None:
                return found
    return case_named_in(key, raw, domain)


def _by_token(db: Connection, recipient: Recipient, sender: str | None, key: bytes) -> Route:
    assert recipient.case_id is not None and recipient.token is not None
    case_id = recipient.case_id
    if db.execute(select(Case.id).where(Case.id == case_id)).first() is None:
        return quarantine(
            UNKNOWN_CASE, f"reply address names case #{case_id}, which does not exist"
        )
    participants = db.execute(
        select(Participant.id, Member.email.label("identity"), Participant.email_index,
               Participant.role)
        .outerjoin(Member, Member.id == Participant.member_id)
        .where(Participant.case_id == case_id)
    ).all()
    pid = match_token(key, case_id, recipient.token, [p.id for p in participants])
    if pid is None:
        return quarantine(
            BAD_TOKEN,
            f"the reply address for case #{case_id} does not verify (forged or mistyped)",
            claimed_case_id=case_id,
        )
    participant = next(p for p in participants if p.id == pid)
    # As ``_is_from`` says: a member's identity's address, anyone else's keyed hash.
    if sender is None or (sender != (participant.identity or "").lower() if participant.identity
                          else writes.participant_index(db, sender) != participant.email_index):
        return quarantine(
            SENDER_MISMATCH,
            f"sent to the reply address of the case's {participant.role}, "
            "but not from that participant's address",
            claimed_case_id=case_id,
        )
    if participant.role == access.MEMBER_ROLE and _removed(db, case_id, participant.id):
        return quarantine(NOT_A_MEMBER, f"sent to a reply address of case #{case_id} by "
                          "someone who is no longer a member of the committee",
                          claimed_case_id=case_id)
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
        # A seat still held before one a member lost.
        participant = db.execute(
            select(Participant.id, Participant.role)
            .outerjoin(Member, Member.id == Participant.member_id)
            .where(Participant.case_id == case_id, _is_from(db, sender))
            .order_by(Participant.left_at.is_not(None), Participant.id)
        ).first()
        if participant is None:
            continue
        if participant.role == access.MEMBER_ROLE and _removed(db, case_id, participant.id):
            return quarantine(NOT_A_MEMBER, f"an answer to mail of case #{case_id} from "
                              "someone who is no longer a member of the committee",
                              claimed_case_id=case_id)
        return Route("join", case_id=case_id, participant_id=participant.id,
                     role=participant.role)
    return None
