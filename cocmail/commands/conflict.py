"""``no-conflict``: the answer to a conflict check. The member is cleared to
read the case: the case so far is mailed to them, and all its later mail
(``commands/replies.py``). The other answer is ``recuse``.
"""

from __future__ import annotations

from cocmail.case.access import Standing
from cocmail.case.events import EventKind
from cocmail.commands.base import Request, Result
from cocmail.store import writes


class NoConflict:
    name = "no-conflict"
    usage = "no-conflict"
    summary = "the answer to a conflict check: you get the case so far and its mail"

    def run(self, request: Request, args: list[str]) -> Result:
        if request.seat.cleared:
            return Result(True, f"You already see case #{request.case_id}.")
        writes.clear(request.db, [request.participant_id], request.now)
        request.stand(Standing.READS)
        request.event(EventKind.NO_CONFLICT)
        return Result(True, f"You have no conflict in case #{request.case_id}: the case so far "
                            "is on its way to you, and you get all of its mail from now on.")


COMMAND = NoConflict()
