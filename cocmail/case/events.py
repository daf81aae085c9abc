"""The kinds of line a case's history holds, and how one is written.

An event row is never changed (the migration's triggers refuse it); its kind is
one of ``EventKind``. ``row()`` is the one way a stage makes one, so a kind
spelled wrong is a type error, not a history nobody can query.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any


class EventKind(StrEnum):
    """Each value is what the ``events.kind`` column holds (and what
    ``case show`` prints)."""

    # The case and its mail (intake).
    OPENED = "opened"
    MESSAGE = "message"
    KEPT_OUT = "kept-out"
    # Paging and escalation (intake, schedule).
    PAGED = "paged"
    NOBODY_PAGED = "nobody-paged"
    ESCALATED = "escalated"
    SLA_MISSED = "sla-missed"
    MEDIATOR = "mediator"
    HANDED_OFF = "handed-off"
    MEMBER_SEATED = "member-seated"
    FOLLOW_UP_DUE = "follow-up-due"
    # The roster (case/members.py).
    MEMBER_RENAMED = "member-renamed"
    MEMBER_EMAIL_CHANGED = "member-email-changed"
    MEMBER_REMOVED = "member-removed"
    MEMBER_RETURNED = "member-returned"
    # A member's commands (commands/).
    ACKNOWLEDGED = "acknowledged"
    RECUSED = "recused"
    NO_CONFLICT = "no-conflict"
    ASSIGNED = "assigned"
    SEVERITY = "severity"
    PARTY_ADDED = "party-added"
    RELAYED = "relayed"
    APPROVED = "approved"
    PLAN = "plan"
    FOLLOW_UP = "follow-up"
    EMERGENCY = "emergency"
    EMERGENCY_CONFIRMED = "emergency-confirmed"
    EMERGENCY_REVERSED = "emergency-reversed"
    VOTE = "vote"
    DECIDED = "decided"
    RECONVENED = "reconvened"
    CLOSED = "closed"
    REOPENED = "reopened"
    PURGE_REQUESTED = "purge-requested"
    PURGED = "purged"


SYSTEM = "cocmail"  # the actor of what cocmail did itself


def row(case_id: int, at: dt.datetime, kind: EventKind, data: dict[str, Any] | None = None,
        *, actor: str = SYSTEM, message_id: int | None = None) -> dict[str, Any]:
    """One row for ``store.writes.insert_events``."""
    return {"case_id": case_id, "at": at, "kind": EventKind(kind).value, "actor": actor,
            "message_id": message_id, "data": data if data is not None else {}}
