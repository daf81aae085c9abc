"""What a template sees: the values for one outbox row, read from the store when
the mail is sent.

This is also the last check of who may read case content: a member who recused
after the mail was queued gets nothing (the row is cancelled), and case content
only ever goes to a member's seat in the case.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cocmail.addresses import mask_addresses, masked, reply_address, without_address
from cocmail.commands.party import named_parties
from cocmail.config import Config
from cocmail.outbox.enqueue import (
    ACK,
    CASE_CONTENT,
    CASEFILE,
    CONFLICT,
    DIGEST,
    ESCALATION,
    HANDOFF,
    RELAY,
    REMINDER,
)
from cocmail.schedule.digest import member_digest, visible_cases
from cocmail.schedule.escalation import age, sla_status
from cocmail.store.models import (
    Attachment,
    Case,
    Event,
    Message,
    Outbox,
    Participant,
    Recusal,
)
from cocmail.tokens import make_token

# What each kind of mail is, in words (the failure notice names the mail that failed).
DESCRIPTIONS = {
    "ack": "the acknowledgement of their report",
    "report": "a new report",
    "page": "a triage page for a new report",
    "message": "a message in the case",
    "notice": "a notice that automatic answers stopped for the day",
    "failure": "a notice of a failed mail",
    "digest": "the daily digest",
    "escalation": "an escalation page",
    "handoff": "the hand-off of triage duty",
    "reminder": "a follow-up reminder",
    "status": "a status mail",
    "confirmation": "the confirmation of a reply's commands",
    "conflict": "a conflict check",
    "casefile": "the case so far",
    "relay": "a message from the committee",
}


@dataclass(frozen=True)
class Cancelled:
    """The row must not be sent, and why (kept as its last error)."""

    reason: str


@dataclass(frozen=True)
class _CaseFacts:
    case: Case
    recusals: dict[str, str]  # handle -> kind
    seats: list[Participant]  # the members' seats, in order
    opened: dict[str, Any]  # the data of its "opened" event


class Lookups:
    """What several mails of one batch read alike, read once in the batch's
    read-only transaction (one snapshot, so nothing read can differ): a case's
    recusals, its members' seats and how it was opened, and a message as the
    templates show it. A new report's acknowledgement and its pages read the
    same case and the same message: reading them for each mail was a fifth of
    the time the outbox took to render a new report's mail."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._cases: dict[int, _CaseFacts] = {}
        self._messages: dict[tuple[int, str], dict[str, Any]] = {}

    def case(self, case_id: int) -> _CaseFacts:
        found = self._cases.get(case_id)
        if found is None:
            session = self.session
            case = session.get(Case, case_id)
            assert case is not None
            recusals = {r.handle: r.kind for r in session.scalars(
                select(Recusal).where(Recusal.case_id == case_id))}
            seats = list(session.scalars(select(Participant).where(
                Participant.case_id == case_id, Participant.role == "member")
                .order_by(Participant.id)))
            opened = session.scalars(select(Event.data).where(
                Event.case_id == case_id, Event.kind == "opened")).first() or {}
            found = self._cases[case_id] = _CaseFacts(case, recusals, seats, opened)
        return found

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
    if row.kind == DIGEST:
        context.update(_digest(session, row, config, timezone))
    if row.kind == HANDOFF:
        context.update(_handoff(session, row, config))
    if row.case_id is None:
        return context
    facts = lookups.case(row.case_id)
    case, recusals = facts.case, facts.recusals
    if row.kind in CASE_CONTENT:
        if participant is None or participant.role != "member":
            return Cancelled("case content goes only to members with a seat in the case")
        if recusals.get(participant.handle or "") in ("hard", "excl"):
            return Cancelled(f"{participant.handle} has recused from case #{case.id}")
        if participant.cleared_at is None:
            return Cancelled(f"{participant.handle} has not yet answered the conflict check "
                             f"of case #{case.id}")
    if row.kind == CONFLICT and (participant is None or participant.cleared_at is not None
                                 or recusals.get(participant.handle or "")):
        return Cancelled("the conflict check was answered")
    seated = [p for p in facts.seats if recusals.get(p.handle or "") not in ("hard", "excl")]
    # Who can read the case now; the reporter is told of every member who may.
    readers = seated if row.kind == ACK else [p for p in seated if p.cleared_at is not None]
    excluded = [m.name for m in committee.members if recusals.get(m.handle) == "excl"]
    first_response_by = case.opened_at + config.sla.first_response
    opened = facts.opened
    context.update({
        "case": {"id": case.id, "reference": f"{committee.short_name} #{case.id}",
                 "opened_at": _when(case.opened_at, timezone), "excluded": excluded,
                 "channel": case.channel, "on_behalf_of": opened.get("on_behalf_of")},
        "members": [p.name or p.email for p in readers],
        "keep_out": [{"name": p.name or p.handle, "address": without_address(committee, p.handle)}
                     for p in readers if p.handle],
        "sla": {"first_response": _duration(config.sla.first_response),
                "first_response_by": _when(first_response_by, timezone)},
    })
    if participant is not None:
        context["reply_address"] = reply_address(
            committee, case.id, make_token(key, case.id, participant.id))
    if row.source_message_id is not None:
        context["message"] = lookups.message(row.source_message_id, timezone)
    if row.kind == "failure":
        failed = session.get(Outbox, int(row.data["failed"]))
        assert failed is not None
        context["failed"] = {
            "kind": failed.kind, "recipient": failed.recipient,
            "role": failed.participant.role if failed.participant else "recipient",
            "description": DESCRIPTIONS.get(failed.kind, failed.kind),
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
            "what": row.data["what"], "by": _member_name(config, str(row.data["by"])),
            "due_at": _when(dt.datetime.fromisoformat(row.data["due_at"]), timezone),
            "state": case.state,
        }
    if row.kind == CONFLICT:
        context["conflict"] = {
            "parties": [{"role": role, "email": email, "name": name}
                        for role, email, name in named_parties(session.connection(), case.id)],
            "waited": (age(dt.timedelta(seconds=int(row.data["waited"])))
                       if "waited" in row.data else None),
            "late": bool(row.data.get("late")),
            "emergency": row.data.get("emergency"),
            "critical": bool(row.data.get("critical")),
        }
    if row.kind == CASEFILE:
        context["casefile"] = _casefile(session, case, timezone)
    if row.kind == RELAY:
        context["relay"] = {"by": _member_name(config, str(row.data["by"])),
                            "text": row.data.get("note") or ""}
    if row.kind == ACK and participant is None:
        return Cancelled("an acknowledgement needs the reporter's seat in the case")
    return context


def _casefile(session: Session, case: Case, timezone: zoneinfo.ZoneInfo) -> dict[str, Any]:
    """The case so far, for a member who has just been cleared to read it: every
    message in it (what the committee got and what it sent), oldest first, and
    its history."""
    messages = [_message(session, m, timezone) for m in session.scalars(
        select(Message).where(Message.case_id == case.id).order_by(Message.id))]
    history = [{"at": _when(e.at, timezone), "kind": e.kind, "actor": e.actor}
               for e in session.scalars(
                   select(Event).where(Event.case_id == case.id).order_by(Event.id))]
    return {"messages": messages, "history": history, "state": case.state,
            "severity": case.severity}


def _digest(session: Session, row: Outbox, config: Config,
            timezone: zoneinfo.ZoneInfo) -> dict[str, Any]:
    handle = str(row.data["handle"])
    member = next((m for m in config.committee.members if m.handle == handle), None)
    if member is not None:
        timezone = zoneinfo.ZoneInfo(member.timezone)
    since = dt.datetime.fromisoformat(str(row.data["since"]))
    content = member_digest(session, handle, since)
    failed = []
    for mail in content["failed"]:
        seat = mail.participant
        if seat is not None and seat.role == "member":
            to = seat.name or seat.handle or "a member"
        elif seat is not None:
            to = f"the {seat.role}"
        else:
            to = masked(mail.recipient)
        failed.append({"id": mail.id, "case": mail.case_id, "attempts": mail.attempts,
                       "description": DESCRIPTIONS.get(mail.kind, mail.kind), "to": to,
                       "error": mask_addresses((mail.last_error or "").replace(mail.recipient,
                                                                               to))})
    day = dt.date.fromisoformat(str(row.data["day"]))
    return {
        "recipient": {"email": row.recipient, "name": member.name if member else None,
                      "role": "member", "handle": handle},
        "day": f"{day:%A} {day.day} {day:%B %Y}",
        "since": _when(since, timezone),
        "cases": [_case_line(case, config, row.created_at, timezone)
                  for case in content["cases"]],
        "failed_mail": failed,
    }


def _handoff(session: Session, row: Outbox, config: Config) -> dict[str, Any]:
    handle = str(row.data["handle"])
    member = next((m for m in config.committee.members if m.handle == handle), None)
    timezone = zoneinfo.ZoneInfo(member.timezone if member else config.rotation.timezone)
    listed = {int(i) for i in row.data["cases"]}
    cases = [case for case in visible_cases(session, handle, pending=True)
             if case.id in listed]
    incoming, outgoing = row.data["incoming"], row.data["outgoing"]
    return {
        "recipient": {"email": row.recipient, "name": member.name if member else None,
                      "role": "member", "handle": handle},
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
