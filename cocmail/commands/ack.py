"""``ack``: I have seen this report; the first-response clock stops."""

from __future__ import annotations

from sqlalchemy import select, update

from cocmail.case import members
from cocmail.case.events import EventKind
from cocmail.commands.base import Request, Result
from cocmail.store.models import Case, Event


class Ack:
    name = "ack"
    usage = "ack"
    summary = "acknowledge the report: you have seen it and are on it"

    def run(self, request: Request, args: list[str]) -> Result:
        done = request.db.execute(
            select(Case.acknowledged_at).where(Case.id == request.case_id)).scalar_one()
        if done is not None:
            by = request.db.execute(
                select(Event.actor).where(Event.case_id == request.case_id,
                                          Event.kind == EventKind.ACKNOWLEDGED).order_by(Event.id)
            ).scalars().first()
            by = members.current_handles(request.db).get(by or "", by)
            who = "you" if by == request.handle else request.name_of(by or "someone")
            return Result(True, f"Already acknowledged by {who} at {done:%Y-%m-%d %H:%M} UTC; "
                                "nothing more to do. Thank you for looking.")
        request.db.execute(update(Case).where(Case.id == request.case_id).values(
            acknowledged_at=request.now, state="triage"))
        request.event(EventKind.ACKNOWLEDGED)
        return Result(True, f"Case #{request.case_id} is acknowledged by you; the other "
                            "members are told.")


COMMAND = Ack()
