"""The parts of a template's context one kind of mail has of its own (the failed
mail, the escalation, the digest, …), built from the row's typed payload and the
store, and the words every part shows times and sizes in.

``notify/context.py`` calls these once it knows the mail may be sent.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cocmail.case import access, members
from cocmail.case.access import CaseAccess
from cocmail.case.parties import named_parties
from cocmail.case.sla import age, sla_status
from cocmail.config import Config, member_of
from cocmail.notify import payloads
from cocmail.notify.digest import member_digest
from cocmail.notify.kinds import KINDS
from cocmail.notify.template_context import (
    AttachmentView,
    CasefileView,
    CaseLine,
    ConflictView,
    EscalationView,
    FailedLine,
    FailedView,
    HandoffView,
    HistoryLine,
    MessageView,
    PartyView,
    RecipientView,
    RelayView,
    ReminderView,
)
from cocmail.store import writes
from cocmail.store.models import Attachment, Case, Event, Message, Outbox
from cocmail.telemetry.masking import mask_addresses, masked


class Names:
    """How mail names a member from a handle it kept (one they may since have
    changed): the member's name now."""

    def __init__(self, config: Config, current: dict[str, str]) -> None:
        self.committee = config.committee
        self.current = current  # ``case.members.current_handles``

    def handle(self, handle: str) -> str:
        return self.current.get(handle, handle)

    def __call__(self, handle: str) -> str:
        return self.committee.name_of(self.handle(handle))


def failed(session: Session, payload: payloads.FailedMail,
           timezone: zoneinfo.ZoneInfo) -> FailedView:
    mail = session.get(Outbox, payload.failed)
    assert mail is not None
    return FailedView(
        kind=mail.kind, recipient=mail.recipient,
        role=mail.participant.role if mail.participant else "recipient",
        description=KINDS[mail.kind].description,
        error=mail.last_error or "", attempts=mail.attempts,
        queued_at=when(mail.created_at, timezone))


def escalation(name: Names, case: Case, payload: payloads.Escalation) -> EscalationView:
    return EscalationView(
        step=payload.step, waited=age(dt.timedelta(seconds=payload.waited)),
        paged=[name(h) for h in payload.paged], by=name(payload.by),
        instead_of_chair=payload.instead_of_chair, severity=case.severity,
        action=payload.action)


def reminder(name: Names, case: Case, payload: payloads.Reminder,
             timezone: zoneinfo.ZoneInfo) -> ReminderView:
    return ReminderView(what=payload.what or "(what it said was purged with the case)",
                        by=name(payload.by),
                        due_at=when(payload.due_at, timezone), state=case.state)


def conflict(session: Session, case: Case, rule: CaseAccess,
             payload: payloads.Conflict) -> ConflictView:
    db = session.connection()
    parties = access.conflict_parties(named_parties(db, case.id), rule.reporter_keys,
                                      lambda address: writes.participant_index(db, address))
    return ConflictView(
        parties=[PartyView(role, email, name) for role, email, name in parties],
        waited=(age(dt.timedelta(seconds=payload.waited))
                if payload.waited is not None else None),
        late=payload.late,
        # That there is one, not what: a measure is in a member's own words.
        emergency=bool(payload.emergency), critical=payload.critical)


def relay(name: Names, payload: payloads.Relay) -> RelayView:
    return RelayView(by=name(payload.by), text=payload.note or "")


def casefile(session: Session, case: Case, timezone: zoneinfo.ZoneInfo,
             member_id: int | None) -> CasefileView:
    """The case so far, for a member who has just been cleared to read it: every
    message in it (what the committee got and what it sent) but those kept from
    them, oldest first, and its history."""
    messages = list(session.scalars(
        select(Message).where(Message.case_id == case.id).order_by(Message.id)))
    kept = access.kept_out_of(session.connection(), [m.id for m in messages])
    shown = [message(session, m, timezone) for m in messages
             if member_id not in kept.get(m.id, set())]
    history = [HistoryLine(when(e.at, timezone), e.kind, e.actor)
               for e in session.scalars(
                   select(Event).where(Event.case_id == case.id).order_by(Event.id))]
    return CasefileView(state=case.state, severity=case.severity, messages=shown,
                        history=history)


def digest(session: Session, row: Outbox, config: Config, payload: payloads.Digest,
           roster: list[members.RosterMember], names: Names) -> dict[str, Any]:
    """A member's digest: the context's ``recipient``, ``day``, ``since``, ``cases``
    and ``failed_mail``."""
    handle = names.handle(payload.handle)
    member = member_of(roster, handle)
    assert member is not None
    timezone = member_timezone(config, handle, "UTC")
    content = member_digest(session, member.id, payload.since)
    failed_mail = []
    for mail in content["failed"]:
        seat = mail.participant
        if seat is not None and seat.role == access.MEMBER_ROLE:
            to = seat.name or seat.handle or "a member"
        elif seat is not None:
            to = f"the {seat.role}"
        else:
            to = masked(mail.recipient)
        failed_mail.append(FailedLine(
            id=mail.id, case=mail.case_id, attempts=mail.attempts,
            description=KINDS[mail.kind].description, to=to,
            error=mask_addresses((mail.last_error or "").replace(mail.recipient, to))))
    day = payload.day
    return {
        "recipient": RecipientView(row.recipient, member.name, "member", handle),
        "day": f"{day:%A} {day.day} {day:%B %Y}",
        "since": when(payload.since, timezone),
        "cases": [case_line(case, config, row.created_at, timezone)
                  for case in content["cases"]],
        "failed_mail": failed_mail,
    }


def handoff(session: Session, row: Outbox, config: Config, payload: payloads.Handoff,
            roster: list[members.RosterMember], name: Names) -> dict[str, Any]:
    """A hand-off: the context's ``recipient``, ``handoff`` and ``cases``."""
    handle = name.handle(payload.handle)
    incoming = [name.handle(h) for h in payload.incoming]
    outgoing = [name.handle(h) for h in payload.outgoing]
    member = member_of(roster, handle)
    assert member is not None
    timezone = member_timezone(config, handle, config.rotation.timezone)
    # Listed by number to an incoming triager even before they answered a
    # conflict check: a notice, no content (``case/access.py``).
    shown = set(access.cases_seen_by(session.connection(), member.id, content=False))
    cases = list(session.scalars(select(Case).where(
        Case.id.in_([i for i in payload.cases if i in shown]), Case.closed_at.is_(None))
        .order_by(Case.id)))
    return {
        "recipient": RecipientView(row.recipient, member.name, "member", handle),
        "handoff": HandoffView(
            at=when(payload.at, timezone), until=when(payload.until, timezone),
            incoming=[name(h) for h in incoming], outgoing=[name(h) for h in outgoing],
            staying=[name(h) for h in incoming if h in outgoing],
            on_duty=handle in incoming),
        "cases": [case_line(case, config, row.created_at, timezone) for case in cases],
    }


def case_line(case: Case, config: Config, now: dt.datetime,
              timezone: zoneinfo.ZoneInfo) -> CaseLine:
    """One case in a digest or a hand-off: metadata only."""
    return CaseLine(
        id=case.id, state=case.state, severity=case.severity,
        opened_at=when(case.opened_at, timezone), age=age(now - case.opened_at),
        acknowledged=case.acknowledged_at is not None,
        sla=sla_status(case.opened_at, case.acknowledged_at, config.sla.first_response, now))


def message(session: Session, source: Message, timezone: zoneinfo.ZoneInfo) -> MessageView:
    author = source.participant
    attachments = session.scalars(
        select(Attachment).where(Attachment.message_id == source.id).order_by(Attachment.id))
    name = author.name if author else None
    address = source.from_address or source.envelope_from or "(unknown)"
    if author is None:
        who = address
    elif author.role == "reporter":
        who = "the reporter"
    else:
        who = author.name or author.email
    return MessageView(
        subject=source.subject,
        sender=f"{name} <{address}>" if name else address,
        author=who,
        role=author.role if author else None,
        date=when(source.sent_at, timezone) if source.sent_at else "(not given)",
        received_at=when(source.received_at, timezone),
        channel=source.channel,
        text=source.text or "(no text)",
        verified=source.verified,
        attachments=[AttachmentView(a.filename, a.content_type, human_size(a.size), a.part)
                     for a in attachments])


def member_timezone(config: Config, handle: str | None, default: str) -> zoneinfo.ZoneInfo:
    """The time zone a member reads their mail in (``default`` for anyone else)."""
    member = config.committee.member(handle) if handle else None
    return zoneinfo.ZoneInfo(member.timezone if member is not None else default)


def when(moment: dt.datetime, timezone: zoneinfo.ZoneInfo) -> str:
    """A time people read without converting: "Saturday 28 November 2026, 10:00 UTC".

    >>> when(dt.datetime(2026, 11, 28, 9, tzinfo=dt.UTC), zoneinfo.ZoneInfo("Europe/Berlin"))
    'Saturday 28 November 2026, 10:00 CET'
    """
    local = moment.astimezone(timezone)
    return f"{local:%A} {local.day} {local:%B %Y, %H:%M} {local.tzname()}"


def human_size(size: int) -> str:
    """
    >>> human_size(512), human_size(2048), human_size(20 * 1024 * 1024)
    ('512 bytes', '2.0 KB', '20.0 MB')
    """
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / 1024 / 1024:.1f} MB"
