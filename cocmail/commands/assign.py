"""``assign me|<handle>``: who leads the case."""

from __future__ import annotations

from sqlalchemy import update

from cocmail.case import access
from cocmail.case.events import EventKind
from cocmail.commands.base import Request, Result
from cocmail.store.models import Case


class Assign:
    name = "assign"
    usage = "assign me|<handle>"
    summary = "make yourself, or another member who can see the case, its lead"

    def run(self, request: Request, args: list[str]) -> Result:
        if len(args) != 1:
            return Result(False, "Say who: assign me, or assign <handle>.")
        handle = request.handle if args[0].lower() == "me" else args[0].lower()
        seeing = [s.handle for s in access.readers(request.seats)]
        if handle not in seeing:
            return Result(False, f"{handle!r} is not a member who can see this case; "
                                 f"they are: {', '.join(seeing)}.")
        request.db.execute(update(Case).where(Case.id == request.case_id).values(
            assignee=handle))
        request.event(EventKind.ASSIGNED, assignee=handle)
        who = "you" if handle == request.handle else request.name_of(handle)
        return Result(True, f"Case #{request.case_id} is assigned to {who}.")


COMMAND = Assign()
