"""What a template sees: the values for one outbox row, read from the store when
the mail is sent.

This is also the last check of who may receive it: each kind names its audience
(``notify/kinds.py``) and ``case/access.py`` says, now, whether the recipient
is in it. A member who recused, was kept out or left the roster after the mail
was queued gets nothing (the row is cancelled, with the reason).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cocmail.case import access, members
from cocmail.case.access import CaseAccess
from cocmail.case.parties import named_parties
from cocmail.case.sla import age, sla_status
from cocmail.config import MEDIATOR, Config
from cocmail.notify.digest import member_digest
from cocmail.notify.kinds import (
    ACK,
    CASEFILE,
    CONFLICT,
    DIGEST,
    ESCALATION,
    FAILURE,
    HANDOFF,
    KINDS,
    RELAY,
    REMINDER,
)
from cocmail.route.addresses import reply_address, without_address
from cocmail.route.tokens import make_token
from cocmail.store.models import Attachment, Case, Event, Message, Outbox, Participant
from cocmail.telemetry.masking import mask_addresses, masked


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
        self._messages: dict[tuple[int, str], dict[str, Any]] = {}
        self._roster: list[members.RosterMember] | None = None

    def case(self, case_id: int) -> _CaseFacts:
        found = self._cases.get(case_id)
        if found is None:
            session = self.session
            case = session.get(Case, case_id)
            assert case is not None
            opened = session.scalars(select(Event.data).where(
                Event.case_id == case_id, Event.kind == "opened")).first() or {}
            found = self._cases[case_id] = _CaseFacts(
                case, access.load(session.connection(), [case_id])[case_id], opened)
        return found

    def roster(self) -> list[members.RosterMember]:
        if self._roster is None:
            self._roster = members.roster(self.session.connection())
        return self._roster

    def message(self, message_id: int, timezone: zoneinfo.ZoneInfo) -> dict[str, Any]:
        """The message as templates show it (times in ``timezone``). Shared by the
        mails that show it: read, never changed."""
        found = self._messages.get((message_id, timezone.key))
        if found is None:
            source = self.session.get(Message, message_id)
            assert source is not None
            found = self._messages[(message_id, timezone.key)] = _message(
                self.session, source, timezone)
        return found


def build(session: Session, row: Outbox, config: Config, key: bytes,
          lookups: Lookups | None = None) -> dict[str, Any] | Cancelled:
    """The values for ``row``'s template, or why it must not be sent. ``lookups``
    shares what a batch's mails read alike (``Lookups``)."""
    lookups = lookups if lookups is not None else Lookups(session)
    committee = config.committee
    kind = KINDS[row.kind]
    participant = row.participant
    timezone = _timezone_of(config, participant)
    context: dict[str, Any] = {
        "kind": row.kind,
        "committee": {"name": committee.name, "short_name": committee.short_name,
                      "address": committee.address},
        "recipient": {"email": row.recipient,
                      "name": participant.name if participant else None,
                      "role": participant.role if participant else None,
                      "handle": participant.handle if participant else None},
        "reply_address": committee.address,
        "case": None,
        "limit": row.data.get("limit"),
        "note": row.data.get("note"),
        "on_duty": [_member_name(config, h) for h in row.data.get("on_duty", [])],
        "transcript": row.data.get("transcript", []),
        "note_to": row.data.get("note_to", []),
        "status_text": row.data.get("status_text", ""),
        "status_lines": row.data.get("lines", []),
        "status_footer": row.data.get("footer"),
        "now": row.created_at,
    }
    if row.case_id is None:
        refused = access.refusal(kind.audience, None, row.participant_id, row.recipient,
                                 active_addresses=[m.email for m in lookups.roster()])
        if refused is not None:
            return Cancelled(refused)
        if row.kind == DIGEST:
            context.update(_digest(session, row, config, timezone, lookups.roster()))
        if row.kind == HANDOFF:
            context.update(_handoff(session, row, config, lookups.roster()))
        return context
    facts = lookups.case(row.case_id)
    case, rule = facts.case, facts.access
    kept_out: Collection[int] = ()
    if kind.content and row.source_message_id is not None:
        kept_out = access.kept_out_of(session.connection(), [row.source_message_id]).get(
            row.source_message_id, set())
    refused = access.refusal(kind.audience, rule, row.participant_id, row.recipient,
                             kept_out=kept_out)
    if refused is not None:
        return Cancelled(refused)
    # Who can read the case now; the reporter is told of every member who may.
    readers = access.notified(rule.seats) if row.kind == ACK else access.readers(rule.seats)
    excluded = [_member_name(config, handle) for handle in rule.kept_out.values()]
    first_response_by = case.opened_at + config.sla.first_response
    opened = facts.opened
    context.update({
        "case": {"id": case.id, "reference": f"{committee.short_name} #{case.id}",
                 "opened_at": _when(case.opened_at, timezone), "excluded": excluded,
                 "channel": case.channel, "on_behalf_of": opened.get("on_behalf_of")},
        "members": [_member_name(config, s.handle) for s in readers],
        "keep_out": [{"name": _member_name(config, s.handle),
                      "address": without_address(committee, s.handle)}
                     for s in readers if s.handle != MEDIATOR],
        "sla": {"first_response": _duration(config.sla.first_response),
                "first_response_by": _when(first_response_by, timezone)},
    })
    if participant is not None:
        context["reply_address"] = reply_address(
            committee, case.id, make_token(key, case.id, participant.id))
    if row.source_message_id is not None:
        context["message"] = lookups.message(row.source_message_id, timezone)
    if row.kind == FAILURE:
        failed = session.get(Outbox, int(row.data["failed"]))
        assert failed is not None
        context["failed"] = {
            "kind": failed.kind, "recipient": failed.recipient,
            "role": failed.participant.role if failed.participant else "recipient",
            "description": KINDS[failed.kind].description,
            "error": failed.last_error or "", "attempts": failed.attempts,
            "queued_at": _when(failed.created_at, timezone),
        }
    if row.kind == ESCALATION:
        context["escalation"] = {
            "step": row.data["step"],
            "waited": age(dt.timedelta(seconds=int(row.data.get("waited", 0)))),
            "paged": [_member_name(config, h) for h in row.data.get("paged", [])],
            "by": _member_name(config, str(row.data.get("by", ""))),
            "instead_of_chair": bool(row.data.get("instead_of_chair")),
            "action": row.data.get("action"),
            "severity": case.severity,
        }
    if row.kind == REMINDER:
        context["reminder"] = {
            "what": row.data["what"] or "(what it said was purged with the case)",
            "by": _member_name(config, str(row.data["by"])),
            "due_at": _when(dt.datetime.fromisoformat(row.data["due_at"]), timezone),
            "state": case.state,
        }
    if row.kind == CONFLICT:
        parties = access.conflict_parties(named_parties(session.connection(), case.id),
                                          rule.reporters)
        context["conflict"] = {
            "parties": [{"role": role, "email": email, "name": name}
                        for role, email, name in parties],
            "waited": (age(dt.timedelta(seconds=int(row.data["waited"])))
                       if "waited" in row.data else None),
            "late": bool(row.data.get("late")),
            # That there is one, not what: a measure is in a member's own words.
            "emergency": bool(row.data.get("emergency")),
            "critical": bool(row.data.get("critical")),
        }
    if row.kind == CASEFILE:
        seat = rule.seat(row.participant_id)
        context["casefile"] = _casefile(session, case, timezone,
                                        seat.member_id if seat is not None else None)
    if row.kind == RELAY:
        context["relay"] = {"by": _member_name(config, str(row.data["by"])),
                            "text": row.data.get("note") or ""}
    return context


def _casefile(session: Session, case: Case, timezone: zoneinfo.ZoneInfo,
              member_id: int | None) -> dict[str, Any]:
    """The case so far, for a member who has just been cleared to read it: every
    message in it (what the committee got and what it sent) but those kept from
    them, oldest first, and its history."""
    messages = list(session.scalars(
        select(Message).where(Message.case_id == case.id).order_by(Message.id)))
    kept = access.kept_out_of(session.connection(), [m.id for m in messages])
    shown = [_message(session, m, timezone) for m in messages
             if member_id not in kept.get(m.id, set())]
    history = [{"at": _when(e.at, timezone), "kind": e.kind, "actor": e.actor}
               for e in session.scalars(
                   select(Event).where(Event.case_id == case.id).order_by(Event.id))]
    return {"messages": shown, "history": history, "state": case.state,
            "severity": case.severity}


def _digest(session: Session, row: Outbox, config: Config, timezone: zoneinfo.ZoneInfo,
            roster: list[members.RosterMember]) -> dict[str, Any]:
    handle = str(row.data["handle"])
    member = next(m for m in roster if m.handle == handle)
    settings = next((m for m in config.committee.members if m.handle == handle), None)
    if settings is not None:
        timezone = zoneinfo.ZoneInfo(settings.timezone)
    since = dt.datetime.fromisoformat(str(row.data["since"]))
    content = member_digest(session, member.id, since)
    failed = []
    for mail in content["failed"]:
        seat = mail.participant
        if seat is not None and seat.role == access.MEMBER_ROLE:
            to = seat.name or seat.handle or "a member"
        elif seat is not None:
            to = f"the {seat.role}"
        else:
            to = masked(mail.recipient)
        failed.append({"id": mail.id, "case": mail.case_id, "attempts": mail.attempts,
                       "description": KINDS[mail.kind].description, "to": to,
                       "error": mask_addresses((mail.last_error or "").replace(mail.recipient,
                                                                               to))})
    day = dt.date.fromisoformat(str(row.data["day"]))
    return {
        "recipient": {"email": row.recipient, "name": member.name, "role": "member",
                      "handle": handle},
        "day": f"{day:%A} {day.day} {day:%B %Y}",
        "since": _when(since, timezone),
        "cases": [_case_line(case, config, row.created_at, timezone)
                  for case in content["cases"]],
        "failed_mail": failed,
    }


def _handoff(session: Session, row: Outbox, config: Config,
             roster: list[members.RosterMember]) -> dict[str, Any]:
    handle = str(row.data["handle"])
    member = next(m for m in roster if m.handle == handle)
    settings = next((m for m in config.committee.members if m.handle == handle), None)
    timezone = zoneinfo.ZoneInfo(settings.timezone if settings else config.rotation.timezone)
    listed = [int(i) for i in row.data["cases"]]
    # Listed by number to an incoming triager even before they answered a
    # conflict check: a notice, no content (``case/access.py``).
    shown = set(access.cases_seen_by(session.connection(), member.id, content=False))
    cases = list(session.scalars(select(Case).where(
        Case.id.in_([i for i in listed if i in shown]), Case.closed_at.is_(None))
        .order_by(Case.id)))
    incoming, outgoing = row.data["incoming"], row.data["outgoing"]
    return {
        "recipient": {"email": row.recipient, "name": member.name, "role": "member",
                      "handle": handle},
        "handoff": {
            "at": _when(dt.datetime.fromisoformat(row.data["at"]), timezone),
            "until": _when(dt.datetime.fromisoformat(row.data["until"]), timezone),
            "incoming": [_member_name(config, h) for h in incoming],
            "outgoing": [_member_name(config, h) for h in outgoing],
            "staying": [_member_name(config, h) for h in incoming if h in outgoing],
            "on_duty": handle in incoming,
        },
        "cases": [_case_line(case, config, row.created_at, timezone) for case in cases],
    }


def _case_line(case: Case, config: Config, now: dt.datetime,
               timezone: zoneinfo.ZoneInfo) -> dict[str, Any]:
    """One case in a digest or a hand-off: metadata only."""
    return {"id": case.id, "state": case.state, "severity": case.severity,
            "opened_at": _when(case.opened_at, timezone), "age": age(now - case.opened_at),
            "acknowledged": case.acknowledged_at is not None,
            "sla": sla_status(case.opened_at, case.acknowledged_at, config.sla.first_response,
                              now)}


def _message(session: Session, source: Message, timezone: zoneinfo.ZoneInfo) -> dict[str, Any]:
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
    return {
        "subject": source.subject,
        "sender": f"{name} <{address}>" if name else address,
        "author": who,
        "role": author.role if author else None,
        "date": _when(source.sent_at, timezone) if source.sent_at else "(not given)",
        "received_at": _when(source.received_at, timezone),
        "channel": source.channel,
        "text": source.text or "(no text)",
        "verified": source.verified,
        "attachments": [{"filename": a.filename, "content_type": a.content_type,
                         "size": human_size(a.size), "part": a.part} for a in attachments],
    }


def _member_name(config: Config, handle: str) -> str:
    if handle == MEDIATOR:
        return "the mediator"
    return next((m.name for m in config.committee.members if m.handle == handle), handle)


def _timezone_of(config: Config, participant: Participant | None) -> zoneinfo.ZoneInfo:
    if participant is not None and participant.handle:
        for member in config.committee.members:
            if member.handle == participant.handle:
                return zoneinfo.ZoneInfo(member.timezone)
    return zoneinfo.ZoneInfo("UTC")


def _when(moment: dt.datetime, timezone: zoneinfo.ZoneInfo) -> str:
    """A time people read without converting: "Saturday 28 November 2026, 10:00 UTC".

    >>> _when(dt.datetime(2026, 11, 28, 9, tzinfo=dt.UTC), zoneinfo.ZoneInfo("Europe/Berlin"))
    'Saturday 28 November 2026, 10:00 CET'
    """
    local = moment.astimezone(timezone)
    return f"{local:%A} {local.day} {local:%B %Y, %H:%M} {local.tzname()}"


def _duration(delta: dt.timedelta) -> str:
    """
    >>> [_duration(dt.timedelta(seconds=s)) for s in (259200, 14400, 90, 30)]
    ['3 days', '4 hours', '90 seconds', '30 seconds']
    """
    seconds = int(delta.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


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
