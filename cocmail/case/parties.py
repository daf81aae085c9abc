"""The outside parties of a case (reporter, respondent, witness, observer): who
they are, and which of them a conflict check may name."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Connection

from cocmail.case.events import EventKind
from cocmail.store.models import Event, Participant

KINDS = ("respondent", "witness", "reporter", "observer")


def parties(db: Connection, case_id: int) -> list[tuple[str, str, str | None]]:
    """(role, email, name) of the case's parties, the reporter first."""
    return [(row.role, row.email, row.name) for row in db.execute(
        select(Participant.role, Participant.email, Participant.name).where(
            Participant.case_id == case_id, Participant.role.in_(KINDS))
        .order_by(Participant.id))]


def named_parties(db: Connection, case_id: int) -> list[tuple[str, str, str | None]]:
    """(role, email, name) of the parties members named with ``party add``: what a
    conflict check shows. Not the reporter's own seat: who reported is not told
    to a member before they have answered the check."""
    named = {(data["role"], data["email"]) for data in db.execute(
        select(Event.data).where(Event.case_id == case_id, Event.kind == EventKind.PARTY_ADDED))
        .scalars()}
    return [party for party in parties(db, case_id) if party[:2] in named]
