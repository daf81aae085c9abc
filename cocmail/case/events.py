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
    # An operator's actions (cli/): the actor is ``operator(user)``.
    MAIL_RETRIED = "mail-retried"


SYSTEM = "cocmail"  # the actor of what cocmail did itself


def operator(user: str) -> str:
    """The actor of what an operator did from the command line, as the operating
    system named them (``cli.base.os_user``)."""
    return f"operator:{user}"

# The values of an event that are the case's content: what members wrote in
# their own words (a reason, vote details, a follow-up, a plan item; an
# emergency measure's action is a word of the member's own, too), and whom
# they name (a party's address, the reporter a member filed for). They are
# sealed under the case's key, and a purge clears them.
PRIVATE = ("reason", "details", "what", "item", "email", "on_behalf_of")
EMERGENCY_EVENTS = (EventKind.EMERGENCY, EventKind.EMERGENCY_CONFIRMED,
                    EventKind.EMERGENCY_REVERSED, EventKind.ESCALATED)


def private(kind: str) -> tuple[str, ...]:
    """The values of an event of ``kind`` that are content (``PRIVATE``)."""
    return (*PRIVATE, *(("action",) if kind in EMERGENCY_EVENTS else ()))


def row(case_id: int, at: dt.datetime, kind: EventKind, data: dict[str, Any] | None = None,
        *, actor: str = SYSTEM, message_id: int | None = None) -> dict[str, Any]:
    """One row for ``store.writes.insert_events`` (``private``: which values it seals)."""
    kind = EventKind(kind)
    return {"case_id": case_id, "at": at, "kind": kind.value, "actor": actor,
            "message_id": message_id, "data": data if data is not None else {},
            "private": private(kind)}
