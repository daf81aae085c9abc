"""The tables: cases, their participants, every message with its raw bytes, the
attachments' metadata, the quarantine, and the append-only event history.

The store knows no mail protocol and no command; it only keeps facts. Times are
stored as naive UTC and come back as aware UTC on every backend.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from cocmail.store.sealing import PartlySealedJSON, SealedBytes, SealedJSON, SealedText


class Bounded(TypeDecorator[str]):
    """A ``String(length)`` that cuts what it is given to fit. PostgreSQL refuses a
    value longer than its column (a display name of 300 characters made a report
    fail); SQLite keeps it whole. The full text always stays in the raw bytes."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        length: int | None = getattr(self.impl, "length", None)
        if value is None or length is None or len(value) <= length:
            return value
        return value[:length]


class UTCDateTime(TypeDecorator[dt.datetime]):
    """An aware UTC datetime on every backend (SQLite has no time zones)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.UTC)


# Names for constraints, so Alembic migrations are the same on SQLite and PostgreSQL.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)


class Base(DeclarativeBase):
    metadata = metadata


class Case(Base):
    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    state: Mapped[str] = mapped_column(Bounded(20), default="new")
    severity: Mapped[str | None] = mapped_column(Bounded(10))
    channel: Mapped[str] = mapped_column(Bounded(20), default="email")
    assignee: Mapped[str | None] = mapped_column(Bounded(32))
    decision: Mapped[str | None] = mapped_column(Bounded(64))
    opened_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # How far the escalation has gone: the largest ``after`` (in seconds) of the
    # steps taken, the first-response deadline included. The sweep advances it
    # with a compare-and-set, so a step is taken once however many daemons look.
    escalated_through: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The head of the case's history (``store/chain.py``): how many events it has
    # and the hash of the latest, so an event removed from the end is noticed.
    head_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    head_hash: Mapped[str | None] = mapped_column(Bounded(64))
    # The data key its content is sealed under (``store/content.py``); None once
    # purged, or in a case from before encryption at rest.
    key_ref: Mapped[str | None] = mapped_column(Bounded(16))

    participants: Mapped[list[Participant]] = relationship(
        back_populates="case", order_by="Participant.id"
    )
    messages: Mapped[list[Message]] = relationship(back_populates="case", order_by="Message.id")
    events: Mapped[list[Event]] = relationship(order_by="Event.id")

    __table_args__ = (
        Index("ix_cases_state", "state"),
        # The sweep's look-up: cases nobody has acknowledged yet, still open.
        Index("ix_cases_waiting", "acknowledged_at", "closed_at"),
        # The open cases (digests, new members' seats), however many are closed.
        Index("ix_cases_closed_at", "closed_at"),
    )


class Member(Base):
    """A committee member (or the mediator, handle ``mediator``) as one identity:
    the roster names them by handle and address, and either may change while the
    identity stays (``case/members.py`` keeps the rows in step with the roster).
    Seats, recusals and keep-outs point here, never at a handle string."""

    __tablename__ = "members"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    handle: Mapped[str] = mapped_column(Bounded(32), unique=True)
    # None for a member known only from a keep-out written before members were rows.
    email: Mapped[str | None] = mapped_column(Bounded(320), unique=True)
    name: Mapped[str | None] = mapped_column(Bounded(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)  # on the roster now
    joined_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    left_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class MemberHandle(Base):
    """Every handle a member has had: history (events, votes) names members by the
    handle they had then, and a handle names one member for good."""

    __tablename__ = "member_handles"

    handle: Mapped[str] = mapped_column(Bounded(32), primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))


class Participant(Base):
    """Someone with a seat in a case: the reporter, a member, the mediator, a party."""

    __tablename__ = "participants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    role: Mapped[str] = mapped_column(Bounded(20))
    # Sealed: who reported, and who else is named, is the case's most private fact.
    email: Mapped[str] = mapped_column(SealedText("participants.email", 320))
    name: Mapped[str | None] = mapped_column(SealedText("participants.name", 200))
    # The keyed hash the address is matched by (``content.address_index``).
    email_index: Mapped[str | None] = mapped_column(Bounded(64))
    handle: Mapped[str | None] = mapped_column(Bounded(32))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # A member's seat: when they were cleared to read the case (they triage it, or
    # answered "no-conflict"). Until then they get only conflict-check notices.
    cleared_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # A member's seat belongs to their identity (None for anyone else).
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"), index=True)
    # When the member lost the seat: they left the roster (a member who comes back
    # is seated again, not cleared, in the open cases).
    left_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    case: Mapped[Case] = relationship(back_populates="participants")

    __table_args__ = (Index("ix_participants_case_id_role_email_index", "case_id", "role",
                            "email_index", unique=True),)


class Message(Base):
    """One message in or out, with its raw bytes exactly as received or sent."""

    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    participant_id: Mapped[int | None] = mapped_column(ForeignKey("participants.id"))
    direction: Mapped[str] = mapped_column(Bounded(3))  # "in" | "out"
    channel: Mapped[str] = mapped_column(Bounded(10))  # smtp | lmtp | pipe | imap | outbox
    # sha256 of the bytes without the transport's trace headers: a message that
    # arrives twice (a retried delivery, or by SMTP and by IMAP) is stored once.
    dedupe_key: Mapped[str | None] = mapped_column(Bounded(64), unique=True)
    raw_sha256: Mapped[str] = mapped_column(Bounded(64))
    raw_size: Mapped[int] = mapped_column(Integer)
    # The data key of its content: its case's, or its own when it came with none.
    key_ref: Mapped[str | None] = mapped_column(Bounded(16))
    raw: Mapped[bytes | None] = mapped_column(SealedBytes("messages.raw"))
    message_id: Mapped[str | None] = mapped_column(Bounded(998), index=True)
    in_reply_to: Mapped[str | None] = mapped_column(Text)
    references: Mapped[str | None] = mapped_column(Text)
    envelope_from: Mapped[str | None] = mapped_column(SealedText("messages.envelope_from", 320))
    recipients: Mapped[list[str]] = mapped_column(SealedJSON("messages.recipients"))
    from_address: Mapped[str | None] = mapped_column(SealedText("messages.from_address", 320))
    subject: Mapped[str | None] = mapped_column(SealedText("messages.subject"))
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    headers: Mapped[list[list[str]] | None] = mapped_column(SealedJSON("messages.headers"))
    text: Mapped[str | None] = mapped_column(SealedText("messages.text"))
    html: Mapped[str | None] = mapped_column(SealedText("messages.html"))
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    automatic: Mapped[str | None] = mapped_column(Bounded(200))
    defects: Mapped[list[str] | None] = mapped_column(JSON)
    # A member's reply: the key of its new text (what they wrote, without quotes
    # and signature). The same text again from the same member in the same case
    # is a replay, whatever its Message-ID: nothing in it is carried out again.
    command_key: Mapped[str | None] = mapped_column(Bounded(64))

    case: Mapped[Case | None] = relationship(back_populates="messages")
    participant: Mapped[Participant | None] = relationship()
    attachments: Mapped[list[Attachment]] = relationship(order_by="Attachment.id")

    __table_args__ = (Index("ix_messages_case_id_command_key", "case_id", "command_key"),)


class MessageKeepOut(Base):
    """A member who must never receive one message (it was sent to their
    ``without-`` address by someone whose keep-out does not reach the whole case)."""

    __tablename__ = "message_keep_outs"

    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), primary_key=True)


class Attachment(Base):
    """What one attachment is. Its content stays inside the message's raw bytes,
    found again by its MIME part number, so it is kept once and purged with them."""

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    part: Mapped[str] = mapped_column(Bounded(64))
    filename: Mapped[str | None] = mapped_column(SealedText("attachments.filename", 500))
    content_type: Mapped[str] = mapped_column(Bounded(200))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(Bounded(64))


class Quarantine(Base):
    """A stored message that opened no case and joined none, with the reason why."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), unique=True)
    reason: Mapped[str] = mapped_column(Bounded(40))
    detail: Mapped[str] = mapped_column(SealedText("quarantine.detail"))
    claimed_case_id: Mapped[int | None] = mapped_column(Integer)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    released_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    resolution: Mapped[str | None] = mapped_column(Text)

    message: Mapped[Message] = relationship()

    __table_args__ = (Index("ix_quarantine_released_at", "released_at"),)


class Recusal(Base):
    """A member who stepped back from a case: "hard" sees nothing more of it,
    "soft" may read but not vote; "excl" was kept out by the reporter (mail to
    ``without-<handle>``) and never sees it. It belongs to the member's identity:
    a new handle or address changes nothing."""

    __tablename__ = "recusals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    kind: Mapped[str] = mapped_column(Bounded(4))  # "hard" | "soft" | "excl"
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("case_id", "member_id"),)


class Event(Base):
    """One line of a case's history. Rows are only ever inserted: the migration
    installs triggers that refuse UPDATE and DELETE on this table (a purge may
    clear the free text in ``data``, nothing else). Each row is a link of the
    case's hash chain (``store/chain.py``): its place, the hash of the one before
    it, a keyed digest of each value in ``data``, and its own hash."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(Bounded(40))
    actor: Mapped[str] = mapped_column(Bounded(320))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    # Its free text sealed value by value (``case.events.private``).
    data: Mapped[dict[str, Any]] = mapped_column(PartlySealedJSON("events.data"), default=dict)
    seq: Mapped[int | None] = mapped_column(Integer)  # 1, 2, … within the case
    prev_hash: Mapped[str | None] = mapped_column(Bounded(64))
    digests: Mapped[dict[str, str] | None] = mapped_column(JSON)
    hash: Mapped[str | None] = mapped_column(Bounded(64))

    message: Mapped[Message | None] = relationship()


class ContentKey(Base):
    """The data key of one case's content (or of one message that came without a
    case), wrapped by the master key with id ``key_id`` (``store/content.py``).
    A purge deletes it."""

    __tablename__ = "content_keys"

    ref: Mapped[str] = mapped_column(Bounded(16), primary_key=True)
    key_id: Mapped[str] = mapped_column(Bounded(12), index=True)
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class KeyringEntry(Base):
    """One of the store's own keys (``store/keyring.py``), wrapped by the master
    key with id ``key_id``."""

    __tablename__ = "keyring"

    name: Mapped[str] = mapped_column(Bounded(20), primary_key=True)
    key_id: Mapped[str] = mapped_column(Bounded(12))
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class Outbox(Base):
    """One mail cocmail will send, has sent, or gave up on.

    A row is written in the same transaction as the change that causes it. ``key``
    is (case, kind, step, recipient): the same mail cannot be queued twice, so a
    crash, a replay or a second replica never sends a mail twice. The Message-ID
    is fixed here, at queue time, so a retry is the same message. What the mail
    says is rendered from the templates when it is sent.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(Bounded(600), unique=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    kind: Mapped[str] = mapped_column(Bounded(20))
    step: Mapped[str] = mapped_column(Bounded(64))
    recipient: Mapped[str] = mapped_column(SealedText("outbox.recipient", 320))
    recipient_index: Mapped[str | None] = mapped_column(Bounded(64))
    participant_id: Mapped[int | None] = mapped_column(ForeignKey("participants.id"))
    # The inbound message this mail is about (a report, a reply), if any.
    source_message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    message_id: Mapped[str] = mapped_column(Bounded(255), unique=True)
    in_reply_to: Mapped[str | None] = mapped_column(Text)
    references: Mapped[str | None] = mapped_column(Text)
    # Sealed under its case's key, or the store's own (``store/content.py``).
    data: Mapped[dict[str, Any]] = mapped_column(PartlySealedJSON("outbox.data"), default=dict)
    # queued | sent | failed | cancelled
    status: Mapped[str] = mapped_column(Bounded(10), default="queued")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # 0 first (acknowledgements, pages), 1 escalations, 2 the rest: under a
    # backlog, the reporter and the triagers hear first.
    priority: Mapped[int] = mapped_column(Integer, default=2, server_default="2")
    # Sealed: a relay's answer may quote the address it refused.
    last_error: Mapped[str | None] = mapped_column(SealedText("outbox.last_error"))
    claimed_by: Mapped[str | None] = mapped_column(Bounded(64))
    claimed_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    failed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    participant: Mapped[Participant | None] = relationship()

    __table_args__ = (
        # The worker's claim: queued rows, most urgent kind first, then oldest.
        Index("ix_outbox_claim", "status", "priority", "due_at"),
        Index("ix_outbox_recipient_index_created_at", "recipient_index", "created_at"),
    )


class RotationOverride(Base):
    """Member ``member`` is on triage duty instead of ``instead_of`` from
    ``starts_at`` until ``ends_at`` (a holiday, a swap)."""

    __tablename__ = "rotation_overrides"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    member: Mapped[str] = mapped_column(Bounded(32))
    instead_of: Mapped[str] = mapped_column(Bounded(32))
    starts_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class Handoff(Base):
    """Triage duty changed hands at ``at``: the record that the hand-off mail was
    queued (once, whichever daemon saw it first) and who handed over to whom."""

    __tablename__ = "handoffs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, unique=True)
    outgoing: Mapped[list[str]] = mapped_column(JSON)
    incoming: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class RetentionRun(Base):
    """Retention ran on ``day`` (UTC, ``YYYY-MM-DD``): the record that it ran once
    that day, whichever daemon's sweep came first, and what it purged."""

    __tablename__ = "retention_runs"

    day: Mapped[str] = mapped_column(Bounded(10), primary_key=True)
    cases: Mapped[int] = mapped_column(Integer, default=0)
    messages: Mapped[int] = mapped_column(Integer, default=0)  # quarantined ones
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class ImapState(Base):
    """How far the IMAP poller has read a folder: the last UID it stored, under the
    folder's UIDVALIDITY (a new UIDVALIDITY means the UIDs start over)."""

    __tablename__ = "imap_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account: Mapped[str] = mapped_column(Bounded(400), unique=True)  # user@host/folder
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class FollowUp(Base):
    """Something to come back to on a case (``follow-up``): reminded once, when due."""

    __tablename__ = "follow_ups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    due_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    what: Mapped[str] = mapped_column(SealedText("follow_ups.what"))
    by: Mapped[str] = mapped_column(Bounded(32))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    reminded_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The reply that set it: its reminder goes to no member that reply was kept from.
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))

    # The sweep's look-up: not yet reminded, by due time.
    __table_args__ = (Index("ix_follow_ups_reminded_at_due_at", "reminded_at", "due_at"),)


class Emergency(Base):
    """An interim measure one member took at once (``emergency``): the committee
    confirms or reverses it by ``due_at``, or the sweep escalates it."""

    __tablename__ = "emergencies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    action: Mapped[str] = mapped_column(Bounded(64))
    reason: Mapped[str | None] = mapped_column(SealedText("emergencies.reason"))
    by: Mapped[str] = mapped_column(Bounded(32))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    resolution: Mapped[str | None] = mapped_column(Bounded(10))  # confirmed | reversed
    resolved_by: Mapped[str | None] = mapped_column(Bounded(32))
    escalated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The reply that took it: its escalation goes to no member that reply was kept from.
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))

    # The sweep's look-up: unresolved, not escalated, by due time.
    __table_args__ = (Index("ix_emergencies_open", "resolved_at", "escalated_at", "due_at"),)
