"""``close [reason]`` and ``reopen``: a case is done, or not after all.

A closed case leaves the escalation, the hand-offs and the digests; its
history and its mail stay. The other members who can see it get a status
mail, with the reason when one is given (none is required).
"""

from __future__ import annotations

from sqlalchemy import select, update

from cocmail.case.events import EventKind
from cocmail.commands.base import Request, Result
from cocmail.store.models import Case


class Close:
    name = "close"
    usage = "close [reason]"
    summary = "close the case (the others are told, with your reason if you give one)"

    def run(self, request: Request, args: list[str]) -> Result:
        case = request.db.execute(select(Case.state, Case.closed_at).where(
            Case.id == request.case_id)).one()
        if case.closed_at is not None:
            return Result(True, f"Case #{request.case_id} was already closed "
                                f"({case.closed_at:%Y-%m-%d %H:%M} UTC); reply \"reopen\" "
                                "to open it again.")
        reason = " ".join(args)
        request.db.execute(update(Case).where(Case.id == request.case_id).values(
            state="closed", closed_at=request.now))
        request.event(EventKind.CLOSED, reason=reason, before=case.state)
        return Result(True, f"Case #{request.case_id} is closed"
                            + (f": {reason}." if reason else ".") + " The others are told.")


class Reopen:
    name = "reopen"
    usage = "reopen"
    summary = "open a closed case again"

    def run(self, request: Request, args: list[str]) -> Result:
        case = request.db.execute(select(Case.closed_at, Case.acknowledged_at).where(
            Case.id == request.case_id)).one()
        if case.closed_at is None:
            return Result(True, f"Case #{request.case_id} is open; nothing to do.")
        state = "triage" if case.acknowledged_at is not None else "new"
        request.db.execute(update(Case).where(Case.id == request.case_id).values(
            state=state, closed_at=None))
        request.event(EventKind.REOPENED, state=state)
        return Result(True, f"Case #{request.case_id} is open again ({state}). "
                            "The others are told.")


CLOSE = Close()
REOPEN = Reopen()
