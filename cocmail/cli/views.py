"""Cases, messages, quarantine entries and outgoing mail as the plain dicts the
CLI prints.

The ``--json`` shapes are a contract (DESIGN.md, "Interface contract"): keys
may be added, never renamed. Nothing here prints message content: the CLI is
an operator's tool, and report content goes only to committee members.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cocmail.case import access
from cocmail.case.access import CaseAccess, Standing
from cocmail.config import Committee
from cocmail.route.addresses import reply_address
from cocmail.route.tokens import make_token
from cocmail.store.models import Case, Message, Outbox, Quarantine
from cocmail.telemetry.masking import mask_addresses, masked


def _time(value: dt.datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def utc_text(value: dt.datetime) -> str:
    """An instant as the JSON shows it: ISO 8601, UTC, with "Z"."""
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def list_cases(session: Session, *, open_only: bool, limit: int | None) -> list[dict[str, Any]]:
    counts = (
        select(Message.case_id, func.count(Message.id).label("n"))
        .where(Message.case_id.is_not(None))
        .group_by(Message.case_id)
        .subquery()
    )
    query = (
        select(Case, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.case_id == Case.id)
        .order_by(Case.id)
    )
    if open_only:
        query = query.where(Case.state != "closed")
    if limit is not None:
        query = query.limit(limit)
    found = session.execute(query).all()
    rules = access.load(session.connection(), [case.id for case, _ in found])
    return [case_summary(case, count, rules[case.id]) for case, count in found]


def case_summary(case: Case, message_count: int, rule: CaseAccess) -> dict[str, Any]:
    return {
        "id": case.id,
        "state": case.state,
        "severity": case.severity,
        "channel": case.channel,
        "assignee": case.assignee,
        "opened_at": _time(case.opened_at),
        "acknowledged_at": _time(case.acknowledged_at),
        "closed_at": _time(case.closed_at),
        "message_count": message_count,
        "recused": [s.handle for s in rule.seats
                    if s.standing in (Standing.RECUSED, Standing.SOFT)],
        "excluded": sorted(rule.kept_out.values()),
        "decision": case.decision,
    }


def case_detail(case: Case, committee: Committee, key: bytes, rule: CaseAccess) -> dict[str, Any]:
    roles = {p.id: p.role for p in case.participants}
    detail = case_summary(case, len(case.messages), rule)
    participants = []
    for p in case.participants:
        seat = rule.seat(p.id)
        participants.append({
            "id": p.id,
            "role": p.role,
            "email": seat.email if seat is not None else p.email,
            "handle": seat.handle if seat is not None else p.handle,
            "reply_address": reply_address(committee, case.id, make_token(key, case.id, p.id)),
            # A member's seat: their standing in the case (case/access.py), and when
            # they were cleared to read it (None: the conflict check is unanswered).
            "standing": str(seat.standing) if seat is not None else None,
            "cleared_at": (seat.cleared_since.isoformat()
                           if seat is not None and seat.cleared_since else None),
        })
    detail["participants"] = participants
    detail["messages"] = [
        {
            "id": m.id,
            "message_id": m.message_id,
            "direction": m.direction,
            "channel": m.channel,
            "sender_role": roles.get(m.participant_id) if m.participant_id else None,
            "verified": m.verified,
            "automatic": m.automatic,
            "received_at": _time(m.received_at),
            "size": m.raw_size,
            "attachments": len(m.attachments),
        }
        for m in case.messages
    ]
    detail["events"] = [
        {
            "id": e.id,
            "at": _time(e.at),
            "kind": e.kind,
            "actor": e.actor,
            "message": e.message_id,
            "data": e.data,
        }
        for e in case.events
    ]
    return detail


def list_quarantine(
    session: Session, *, include_released: bool, limit: int | None
) -> list[dict[str, Any]]:
    query = select(Quarantine).order_by(Quarantine.id)
    if not include_released:
        query = query.where(Quarantine.released_at.is_(None))
    if limit is not None:
        query = query.limit(limit)
    return [_quarantine_entry(q) for q in session.scalars(query).all()]


def _quarantine_entry(q: Quarantine) -> dict[str, Any]:
    return {
        "id": q.id,
        "reason": q.reason,
        "detail": q.detail,
        "received_at": _time(q.received_at),
        "message": q.message_id,
        "size": q.message.raw_size,
        "claimed_case": q.claimed_case_id,
        "released_at": _time(q.released_at),
        "resolution": q.resolution,
    }


def show_quarantined(session: Session, entry_id: int) -> dict[str, Any] | None:
    """One quarantine entry with what its message says: its listing's fields, the
    headers as they came and the text (what the operator reads to decide on a
    ``replay``); None when there is no such entry."""
    entry = session.get(Quarantine, entry_id)
    if entry is None:
        return None
    message = entry.message
    headers = [[name, value] for name, value in message.headers or []]
    return {**_quarantine_entry(entry), "headers": headers, "text": message.text, "attachments": [
                {"filename": a.filename, "content_type": a.content_type, "size": a.size}
                for a in message.attachments]}


def list_outbox(
    session: Session, *, failed_only: bool, limit: int | None, case_id: int | None = None
) -> list[dict[str, Any]]:
    """Outgoing mail, newest first. Members are named by handle; the address of anyone
    outside the committee is shown by its domain only (the operator can tell a
    relay's trouble with a domain without reading reporters' addresses)."""
    query = select(Outbox).order_by(Outbox.id.desc())
    if failed_only:
        query = query.where(Outbox.status == "failed")
    if case_id is not None:
        query = query.where(Outbox.case_id == case_id)
    if limit is not None:
        query = query.limit(limit)
    return [outbox_row(row) for row in session.scalars(query).all()]


def outbox_row(row: Outbox) -> dict[str, Any]:
    participant = row.participant
    role = participant.role if participant is not None else None
    if participant is not None and participant.handle:
        shown = participant.handle
    else:
        shown = masked(row.recipient)
    error = row.last_error
    if error:
        # A relay's answer may name the address, or another one it forwards to.
        error = mask_addresses(error.replace(row.recipient, shown))
    return {
        "id": row.id,
        "case": row.case_id,
        "kind": row.kind,
        "step": row.step,
        "recipient": shown,
        "recipient_role": role,
        "status": row.status,
        "attempts": row.attempts,
        "created_at": _time(row.created_at),
        "due_at": _time(row.due_at) if row.status == "queued" else None,
        "sent_at": _time(row.sent_at),
        "failed_at": _time(row.failed_at),
        "last_error": error,
        "message_id": row.message_id,
    }


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """Rows as an aligned text table; ``columns`` are (key, heading) pairs."""

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, list):
            return ",".join(str(v) for v in value) or "-"
        return str(value)

    grid = [[heading for _, heading in columns]]
    grid += [[cell(row.get(key)) for key, _ in columns] for row in rows]
    widths = [max(len(r[i]) for r in grid) for i in range(len(columns))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in grid
    )
