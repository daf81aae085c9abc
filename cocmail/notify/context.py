"""What a template sees: the values for one outbox row, read from the store when
the mail is sent.

This is also the last check of who may receive it: each kind names its audience
(``notify/kinds.py``) and ``case/access.py`` says, now, whether the recipient
is in it. A member who recused, was kept out or left the roster after the mail
was queued gets nothing (the row is cancelled, with the reason).
"""

from __future__ import annotations

import dataclasses
import zoneinfo
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cocmail.case import access, members
from cocmail.case.access import CaseAccess
from cocmail.case.events import EventKind
from cocmail.case.sla import age
from cocmail.config import MEDIATOR, Config
from cocmail.notify import payloads, sections
from cocmail.notify.kinds import ACK, CASEFILE, KINDS, Kind
from cocmail.notify.template_context import (
    CaseView,
    CommitteeView,
    Context,
    KeepOut,
    MessageView,
    RecipientView,
    SlaView,
)
from cocmail.route.addresses import reply_address, without_address
from cocmail.route.tokens import make_token
from cocmail.store.models import Case, Event, Message, Outbox


@dataclass(frozen=True)
class Cancelled:
    """The row must not be sent, and why (kept as its last error)."""

    reason: str


@dataclass(frozen=True)
class _CaseFacts:
    case: Case
    access: CaseAccess  # who may receive what (``case/access.py``)
    opened: dict[str, Any]  # the data of its "opened" event


class Lookups:
    """What several mails of one batch read alike, read once in the batch's
    read-only transaction (one snapshot, so nothing read can differ): a case's
    seats and how it was opened, the roster, and a message as the templates
    show it. A new report's acknowledgement and its pages read the same case and
    the same message: reading them for each mail was a fifth of the time the
    outbox took to render a new report's mail."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._cases: dict[int, _CaseFacts] = {}
        self._messages: dict[tuple[int, str], MessageView] = {}
        self._roster: list[members.RosterMember] | None = None
        self._handles: dict[str, str] | None = None

    def case(self, case_id: int) -> _CaseFacts:
        found = self._cases.get(case_id)
        if found is None:
            session = self.session
            case = session.get(Case, case_id)
            assert case is not None
            opened = session.scalars(select(Event.data).where(
                Event.case_id == case_id, Event.kind == EventKind.OPENED)).first() or {}
            found = self._cases[case_id] = _CaseFacts(
                case, access.load(session.connection(), [case_id])[case_id], opened)
        return found

    def roster(self) -> list[members.RosterMember]:
        if self._roster is None:
            self._roster = members.roster(self.session.connection())
        return self._roster

    def names(self, config: Config) -> sections.Names:
        if self._handles is None:
            self._handles = members.current_handles(self.session.connection())
        return sections.Names(config, self._handles)

    def message(self, message_id: int, timezone: zoneinfo.ZoneInfo) -> MessageView:
        """The message as templates show it (times in ``timezone``). Shared by the
        mails that show it: read, never changed."""
        found = self._messages.get((message_id, timezone.key))
        if found is None:
            source = self.session.get(Message, message_id)
            assert source is not None
            found = self._messages[(message_id, timezone.key)] = sections.message(
                self.session, source, timezone)
        return found


def payload_of(row: Outbox) -> payloads.Payload:
    """The row's payload, as the type its kind carries."""
    return KINDS[row.kind].payload.from_json(row.data)


def build(session: Session, row: Outbox, config: Config, key: bytes,
          lookups: Lookups | None = None) -> Context | Cancelled:
    """The values for ``row``'s template, or why it must not be sent. ``lookups``
    shares what a batch's mails read alike (``Lookups``)."""
    lookups = lookups if lookups is not None else Lookups(session)
    kind = KINDS[row.kind]
    payload = payload_of(row)
    names = lookups.names(config)
    context = _common(row, config, payload, names)
    if row.case_id is None:
        refused = access.refusal(kind.audience, None, row.participant_id, row.recipient,
                                 active_addresses=[m.email for m in lookups.roster()])
        if refused is not None:
            return Cancelled(refused)
        if isinstance(payload, payloads.Digest):
            return context.but(**sections.digest(session, row, config, payload,
                                                 lookups.roster(), names))
        if isinstance(payload, payloads.Handoff):
            return context.but(**sections.handoff(session, row, config, payload,
                                                  lookups.roster(), names))
        return context
    facts = lookups.case(row.case_id)
    refused = _refusal(session, row, kind, facts.access)
    if refused is not None:
        return Cancelled(refused)
    return _in_case(session, row, config, key, lookups, facts, context, payload, names)


def _common(row: Outbox, config: Config, payload: payloads.Payload,
            names: sections.Names) -> Context:
    """What every mail's template has: who from, to whom, and its payload's words."""
    committee = config.committee
    participant = row.participant
    values: dict[str, Any] = {}
    if isinstance(payload, payloads.OnDuty):
        values["on_duty"] = [names(h) for h in payload.on_duty]
    elif isinstance(payload, payloads.Note):
        values["note"] = payload.note
    elif isinstance(payload, payloads.AnswerLimit):
        values["limit"] = payload.limit
    elif isinstance(payload, payloads.Confirmation):
        values.update(transcript=payload.transcript, note_to=payload.note_to)
    elif isinstance(payload, payloads.Status):
        values.update(status_text=payload.status_text, status_lines=payload.lines,
                      status_footer=payload.footer)
    return Context(
        kind=row.kind,
        committee=CommitteeView(committee.name, committee.short_name, committee.address),
        recipient=RecipientView(row.recipient,
                                participant.name if participant else None,
                                participant.role if participant else None,
                                participant.handle if participant else None),
        reply_address=committee.address, now=row.created_at, **values)


def _refusal(session: Session, row: Outbox, kind: Kind, rule: CaseAccess) -> str | None:
    """Why the recipient may not have this mail of a case now, if they may not."""
    kept_out: Collection[int] = ()
    if kind.content and row.source_message_id is not None:
        kept_out = access.kept_out_of(session.connection(), [row.source_message_id]).get(
            row.source_message_id, set())
    return access.refusal(kind.audience, rule, row.participant_id, row.recipient,
                          kept_out=kept_out)


def _in_case(session: Session, row: Outbox, config: Config, key: bytes, lookups: Lookups,
             facts: _CaseFacts, context: Context, payload: payloads.Payload,
             names: sections.Names) -> Context:
    """A mail about a case: the case, who may read it, and the kind's own part."""
    committee = config.committee
    case, rule = facts.case, facts.access
    timezone = sections.member_timezone(
        config, row.participant.handle if row.participant else None, "UTC")
    # Who can read the case now; the reporter is told of every member who may.
    readers = access.notified(rule.seats) if row.kind == ACK else access.readers(rule.seats)
    values: dict[str, Any] = {
        "case": CaseView(id=case.id, reference=f"{committee.short_name} #{case.id}",
                         opened_at=sections.when(case.opened_at, timezone),
                         excluded=[committee.name_of(h) for h in rule.kept_out.values()],
                         channel=case.channel,
                         on_behalf_of=facts.opened.get("on_behalf_of")),
        "members": [committee.name_of(s.handle) for s in readers],
        "keep_out": [KeepOut(committee.name_of(s.handle), without_address(committee, s.handle))
                     for s in readers if s.handle != MEDIATOR],
        "sla": SlaView(age(config.sla.first_response, exact=True),
                       sections.when(case.opened_at + config.sla.first_response, timezone)),
    }
    if row.participant is not None:
        values["reply_address"] = reply_address(
            committee, case.id, make_token(key, case.id, row.participant.id))
    if row.source_message_id is not None:
        values["message"] = lookups.message(row.source_message_id, timezone)
    if isinstance(payload, payloads.FailedMail):
        values["failed"] = sections.failed(session, payload, timezone)
    elif isinstance(payload, payloads.Escalation):
        values["escalation"] = sections.escalation(names, case, payload)
    elif isinstance(payload, payloads.Reminder):
        values["reminder"] = sections.reminder(names, case, payload, timezone)
    elif isinstance(payload, payloads.Conflict):
        values["conflict"] = sections.conflict(session, case, rule, payload)
    elif isinstance(payload, payloads.Relay):
        values["relay"] = sections.relay(names, payload)
    if row.kind == CASEFILE:
        seat = rule.seat(row.participant_id)
        values["casefile"] = sections.casefile(session, case, timezone,
                                               seat.member_id if seat is not None else None)
    return dataclasses.replace(context, **values)
