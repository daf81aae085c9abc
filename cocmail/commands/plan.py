"""``plan <item> [done|n/a|open]``: the four questions of "Building a plan".

The process asks, for each report: can the reporter clarify it, can witnesses,
is there a public record, and is anyone's safety at risk. Each is open until a
member marks it done or not applicable; ``cocmail case show`` lists them. The
state of an item is the last ``plan`` event about it (the history keeps them
all).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from cocmail.case.events import EventKind
from cocmail.commands.base import Request, Result
from cocmail.store.models import Event

ITEMS = {
    "clarify-reporter": "ask the reporter for anything unclear",
    "clarify-witnesses": "ask witnesses what they saw",
    "public-record": "check the public record (chat logs, issues, recordings)",
    "safety-review": "is anyone's safety at risk now?",
}
STATES = ("done", "n/a", "open")


class Plan:
    name = "plan"
    usage = "plan <item> [done|n/a|open]"
    summary = "mark an item of the plan: " + ", ".join(ITEMS)

    def run(self, request: Request, args: list[str]) -> Result:
        if not args or args[0].lower() not in ITEMS or len(args) > 2:
            return Result(False, f"Say which item: plan {'|'.join(ITEMS)} [done|n/a|open].")
        item = args[0].lower()
        state = args[1].lower() if len(args) == 2 else "done"
        if state not in STATES:
            return Result(False, f"An item is done, n/a or open, like: plan {item} done.")
        before = plan_of(request.db, request.case_id, request.events)[item]
        if before == state:
            return Result(True, f"{item} was already {state}.")
        request.event(EventKind.PLAN, item=item, state=state, before=before)
        left = [i for i, s in plan_of(request.db, request.case_id, request.events).items()
                if s == "open"]
        return Result(True, f"{item}: {state}. Still open: {', '.join(left) or 'nothing'}.")


def plan_of(db: Connection, case_id: int, pending: list[dict[str, Any]] | None = None
            ) -> dict[str, str]:
    """Each item's state: the last ``plan`` event about it (``pending``: events of
    this reply, not yet written), or open."""
    state = dict.fromkeys(ITEMS, "open")
    for data in db.execute(select(Event.data).where(
            Event.case_id == case_id, Event.kind == EventKind.PLAN).order_by(Event.id)).scalars():
        if data.get("item") in state:
            state[data["item"]] = data["state"]
    for data in (e["data"] for e in pending or [] if e["kind"] == "plan"):
        state[data["item"]] = data["state"]
    return state


COMMAND = Plan()
