"""What a purge deletes, for good: the content of a case, or of a quarantined
message nobody claimed. Two ways lead here: the ``purge`` command (two members
ask, ``commands/purge.py``) and retention (``schedule/retention.py``).

Every message of the case (and those a quarantine entry claims for it) loses
its raw bytes, headers, subject, text, HTML and addresses, its attachments'
records go, the mail still to go is not sent and what was queued from the case
loses its text and recipient, follow-ups and emergency measures lose what they
said, seats lose whom they named, and the history keeps its events without
their free text (``case.events.private``; the chain keeps their digests,
``store/chain.py``). Then the data keys the content was sealed under are
deleted (``store/content.py``): a dead row version, a replica or a later
backup holds only ciphertext nothing opens. What stays is the metadata (who,
when, sizes) and the shape of the history. On SQLite the freed pages are
zeroed and the write-ahead log emptied after the commit (``Store.scrub``), so
no byte of the purged text or of its key stays in the files."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Select, delete, or_, select, update
from sqlalchemy.engine import Connection

from cocmail.case import events
from cocmail.case.events import EventKind
from cocmail.store import content, sealing, writes
from cocmail.store.models import (
    Attachment,
    Case,
    Emergency,
    Event,
    FollowUp,
    Message,
    Outbox,
    Participant,
    Quarantine,
)

# What a message keeps of its content after a purge: nothing.
_NO_CONTENT = {"raw": None, "headers": None, "subject": None, "text": None, "html": None,
               "from_address": None, "envelope_from": None}


def is_purged(db: Connection, case_id: int) -> bool:
    return db.execute(select(Event.id).where(Event.case_id == case_id,
                                             Event.kind == EventKind.PURGED)).first() is not None


def cleared_keys(kind: str) -> tuple[str, ...]:
    """The values of an event of ``kind`` a purge clears (the history's chain
    accepts them gone in a purged case, and nothing else gone): its content."""
    return events.private(kind)


def purge(db: Connection, case_id: int) -> None:
    """Delete the content of case ``case_id``: its messages' (those a quarantine
    entry claims for it included), the mail queued from them, its follow-ups'
    and emergency measures' text, the free text of its events, whom its seats
    name; then its data keys, so no copy of any of it opens again."""
    messages = select(Message.id).where(or_(
        Message.case_id == case_id,
        Message.id.in_(select(Quarantine.message_id).where(
            Quarantine.claimed_case_id == case_id))))
    keys = _message_keys(db, messages)
    keys += [bytes.fromhex(ref) for ref in db.execute(
        select(Case.key_ref).where(Case.id == case_id)).scalars() if ref]
    _delete_content(db, messages)
    # Mail not sent yet would carry what was just deleted: it is not sent.
    # Queued mail, and relays still held for approval: nothing of the case goes out.
    db.execute(update(Outbox).where(Outbox.case_id == case_id,
                                    Outbox.status.in_(("queued", "held")))
               .values(status="cancelled"))
    db.execute(update(Outbox).where(Outbox.case_id == case_id).values(
        data={}, recipient=_purged(db, Outbox.__table__.c.recipient.type),
        recipient_index=None, last_error=_purged(db, Outbox.__table__.c.last_error.type,
                                                 "the case was purged")))
    db.execute(update(FollowUp).where(FollowUp.case_id == case_id).values(
        what=_purged(db, FollowUp.__table__.c.what.type, "")))
    db.execute(update(Emergency).where(Emergency.case_id == case_id).values(
        reason=None, action="(purged)"))
    # A seat keeps its role and its member; the address and name it held go. A
    # member's seat key (``writes.seat_key``) names no one outside the committee.
    # The keyed hash of the address stays: the reporter's later mail to the case
    # still finds it (a hash only the master key's holder can test a guess on).
    email = Participant.__table__.c.email.type
    for seat_id, member_id in db.execute(select(Participant.id, Participant.member_id).where(
            Participant.case_id == case_id)).all():
        kept = writes.seat_key(member_id) if member_id is not None else "(purged)"
        db.execute(update(Participant).where(Participant.id == seat_id).values(
            email=_purged(db, email, kept), name=None))
    for event_id, kind, data in db.execute(select(Event.id, Event.kind, Event.data).where(
            Event.case_id == case_id)).all():
        private = cleared_keys(kind)
        # An empty value too: sealed, it is ciphertext under the key about to go.
        if any(data.get(key) is not None for key in private):
            db.execute(update(Event).where(Event.id == event_id).values(
                data={**data, **{key: None for key in private if key in data}}))
    db.execute(update(Case).where(Case.id == case_id).values(key_ref=None))
    content.destroy(db, keys)
    writes.scrub_after_commit(db)


def purge_quarantined(db: Connection, entry_ids: list[int], resolution: str,
                      now: dt.datetime) -> None:
    """Delete the content of the messages of quarantine entries ``entry_ids`` (that
    no case claims), and their data keys; release the entries with ``resolution``."""
    if not entry_ids:
        return
    messages = select(Quarantine.message_id).where(Quarantine.id.in_(entry_ids))
    keys = _message_keys(db, messages)
    _delete_content(db, messages)
    db.execute(update(Quarantine).where(Quarantine.id.in_(entry_ids),
                                        Quarantine.released_at.is_(None))
               .values(released_at=now, resolution=resolution))
    content.destroy(db, keys)
    writes.scrub_after_commit(db)


def _purged(db: Connection, column: Any, value: Any = "(purged)") -> Any:
    """What a column that must hold something holds once purged: ``value``, under
    the store's own key (the case's is about to go)."""
    return content.seal(db, sealing.GENERAL, column, value)


def _message_keys(db: Connection, messages: Select[Any]) -> list[bytes]:
    return [bytes.fromhex(ref) for ref in db.execute(select(Message.key_ref).where(
        Message.id.in_(messages))).scalars() if ref]


def _delete_content(db: Connection, messages: Select[Any]) -> None:
    """The messages lose all they said; their quarantine entries what they said
    of them (which may quote an address)."""
    db.execute(delete(Attachment).where(Attachment.message_id.in_(messages)))
    db.execute(update(Message).where(Message.id.in_(messages)).values(
        **_NO_CONTENT, recipients=_purged(db, Message.__table__.c.recipients.type, []),
        key_ref=None))
    db.execute(update(Quarantine).where(Quarantine.message_id.in_(messages)).values(
        detail=_purged(db, Quarantine.__table__.c.detail.type)))
