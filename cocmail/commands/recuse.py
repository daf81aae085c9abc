"""``recuse [hard|soft] [reason]``: a member with a conflict of interest steps back.

Hard (the default): they get nothing more about the case and cannot act on it.
Soft: they may still read it (a soft recusal answers a conflict check: the
case so far comes to them), but not vote or decide. No reason is required;
one given is kept in the case's history. A triager who recuses is replaced:
the next member of the rotation who can act is paged
(``schedule/stand_ins.py``, from ``commands/replies.py``).
"""

from __future__ import annotations

from cocmail.case.access import Standing
from cocmail.case.events import EventKind
from cocmail.commands.base import Request, Result
from cocmail.store import writes

KINDS = ("hard", "soft")


class Recuse:
    name = "recuse"
    usage = "recuse [hard|soft] [reason]"
    summary = "step back for a conflict: hard (nothing more) or soft (read, no vote)"

    def run(self, request: Request, args: list[str]) -> Result:
        kind = args[0].lower() if args and args[0].lower() in KINDS else "hard"
        reason = " ".join(args[1:] if args and args[0].lower() in KINDS else args)[:500]
        before = {Standing.SOFT: "soft", Standing.RECUSED: "hard"}.get(request.seat.standing)
        if before == kind or before == "hard":
            return Result(True, f"You had already recused ({before}) from case "
                                f"#{request.case_id}.")
        assert request.seat.member_id is not None
        writes.set_recusal(request.db, request.case_id, request.seat.member_id, kind,
                           request.now)
        request.event(EventKind.RECUSED, recusal=kind, reason=reason, before=before)
        if kind == "hard":
            request.stand(Standing.RECUSED)
            return Result(True, f"You have stepped back from case #{request.case_id}: you "
                                "will get nothing more about it.")
        if not request.seat.cleared:
            # A soft recusal answers the conflict check: they read, and do not vote.
            writes.clear(request.db, [request.participant_id], request.now)
        request.stand(Standing.SOFT)
        return Result(True, f"You have stepped back from deciding case #{request.case_id}: "
                            "you still get its mail, but you do not vote.")


COMMAND = Recuse()
