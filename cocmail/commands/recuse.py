"""``recuse [hard|soft] [reason]``: a member with a conflict of interest steps back.

Hard (the default): they get nothing more about the case and cannot act on it.
Soft: they may still read it, but not vote or decide. No reason is required;
one given is kept in the case's history. A triager who recuses is replaced:
the next member of the rotation who can act is paged (``intake``).
"""

from __future__ import annotations

from sqlalchemy import insert, select, update

from cocmail.commands.base import Request, Result
from cocmail.store.models import Recusal

KINDS = ("hard", "soft")


class Recuse:
    name = "recuse"
    usage = "recuse [hard|soft] [reason]"
    summary = "step back for a conflict: hard (nothing more) or soft (read, no vote)"

    def run(self, request: Request, args: list[str]) -> Result:
        kind = args[0].lower() if args and args[0].lower() in KINDS else "hard"
        reason = " ".join(args[1:] if args and args[0].lower() in KINDS else args)[:500]
        before = request.db.execute(select(Recusal.kind).where(
            Recusal.case_id == request.case_id, Recusal.handle == request.handle)).scalar()
        if before == kind or before == "hard":
            return Result(True, f"You had already recused ({before}) from case "
                                f"#{request.case_id}.")
        if before is None:
            request.db.execute(insert(Recusal).values(
                case_id=request.case_id, handle=request.handle, kind=kind, at=request.now))
        else:
            request.db.execute(update(Recusal).where(
                Recusal.case_id == request.case_id, Recusal.handle == request.handle)
                .values(kind=kind, at=request.now))
        request.event("recused", recusal=kind, reason=reason, before=before)
        if kind == "hard":
            return Result(True, f"You have stepped back from case #{request.case_id}: you "
                                "will get nothing more about it.")
        return Result(True, f"You have stepped back from deciding case #{request.case_id}: "
                            "you still get its mail, but you do not vote.")


COMMAND = Recuse()
