"""``severity low|medium|high|critical``: how serious and urgent the report is."""

from __future__ import annotations

from sqlalchemy import select, update

from cocmail.case.events import EventKind
from cocmail.commands.base import Request, Result
from cocmail.store.models import Case

LEVELS = ("low", "medium", "high", "critical")


class Severity:
    name = "severity"
    usage = "severity low|medium|high|critical"
    summary = "set how serious and urgent the report is"

    def run(self, request: Request, args: list[str]) -> Result:
        if len(args) != 1 or args[0].lower() not in LEVELS:
            return Result(False, f"Severity must be one of {', '.join(LEVELS)}, "
                                 "like: severity high")
        level = args[0].lower()
        before = request.db.execute(
            select(Case.severity).where(Case.id == request.case_id)).scalar_one()
        if before == level:
            return Result(True, f"Severity was already {level}.")
        request.db.execute(update(Case).where(Case.id == request.case_id).values(
            severity=level))
        request.event(EventKind.SEVERITY, before=before, after=level)
        return Result(True, f"Severity set to {level}"
                            + (f" (was {before})." if before else "."))


COMMAND = Severity()
