"""``emergency <action> [reason]``: one member records an interim measure at once
(a ban from a venue or a channel while the committee meets, say). Every member
who can see the case is paged (``commands/replies.py``); the committee must answer
``emergency confirm`` or ``emergency reverse [reason]`` within
``committee.emergency_within`` (24h by default), or the sweep escalates it to
the whole committee (``schedule/emergencies.py``). The member who took the
measure cannot confirm it themselves.
"""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import select, update

from cocmail.case.events import EventKind
from cocmail.commands.base import Request, Result
from cocmail.store import writes
from cocmail.store.models import Emergency


class Waiting(NamedTuple):
    id: int
    action: str
    by: str


class EmergencyCommand:
    name = "emergency"
    usage = "emergency <action> [reason] | confirm | reverse [reason]"
    summary = "an interim measure now; the committee confirms or reverses it"

    def run(self, request: Request, args: list[str]) -> Result:
        if not args:
            return Result(False, "Like: emergency platform-ban harassment at the event; or, "
                                 "to answer one: emergency confirm, emergency reverse <reason>.")
        verb = args[0].lower()
        if verb in ("confirm", "reverse"):
            return self._resolve(request, verb, " ".join(args[1:])[:500])
        open_one = self._open(request)
        if open_one is not None:
            return Result(False, f"An emergency measure is already waiting in case "
                                 f"#{request.case_id} ({open_one.action}): confirm or reverse "
                                 "it first.")
        action, reason = args[0].lower()[:64], " ".join(args[1:])[:500] or None
        due = request.now + request.emergency_within
        writes.insert_emergency(request.db, {
            "case_id": request.case_id, "action": action, "reason": reason,
            "by": request.handle, "at": request.now, "due_at": due,
            "message_id": request.message_id})
        request.event(EventKind.EMERGENCY, action=action, reason=reason, due_at=due.isoformat())
        return Result(True, f"Emergency measure recorded: {action}. The committee is paged and "
                            f"must confirm or reverse it by {due:%Y-%m-%d %H:%M} UTC.")

    def _open(self, request: Request) -> Waiting | None:
        """The measure in the case still waiting for an answer."""
        row = request.db.execute(select(Emergency.id, Emergency.action, Emergency.by).where(
            Emergency.case_id == request.case_id, Emergency.resolved_at.is_(None))
            .order_by(Emergency.id)).first()
        return None if row is None else Waiting(row.id, row.action, row.by)

    def _resolve(self, request: Request, verb: str, reason: str) -> Result:
        measure = self._open(request)
        if measure is None:
            return Result(False, f"No emergency measure waits for an answer in case "
                                 f"#{request.case_id}.")
        if verb == "confirm" and measure.by == request.handle:
            return Result(False, "The member who took an emergency measure cannot confirm it: "
                                 "another member must.")
        resolution = "confirmed" if verb == "confirm" else "reversed"
        done = request.db.execute(update(Emergency).where(
            Emergency.id == measure.id, Emergency.resolved_at.is_(None)).values(
            resolved_at=request.now, resolution=resolution, resolved_by=request.handle)).rowcount
        if done != 1:
            return Result(False, "Another member answered it at the same moment.")
        request.event(EventKind.EMERGENCY_CONFIRMED if verb == "confirm"
                      else EventKind.EMERGENCY_REVERSED,
                      action=measure.action, reason=reason or None)
        return Result(True, f"The emergency measure ({measure.action}) is {resolution}.")


COMMAND = EmergencyCommand()
