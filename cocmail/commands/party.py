"""``party add respondent|witness|reporter|observer <email> [name]``: the people
a case is about, or who may know something.

A party gets a seat in the case (and with it a private reply address, for the
outreach to come), but no mail: naming someone tells them nothing. Parties are
listed by ``cocmail case show`` and in the summary ``reconvene`` sends.
"""

from __future__ import annotations

import re

from sqlalchemy import select

from cocmail.case.events import EventKind
from cocmail.case.parties import KINDS
from cocmail.commands.base import Request, Result
from cocmail.store import writes
from cocmail.store.models import Participant

_EMAIL = re.compile(r"[^@\s<>(),;:\"\[\]]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+")


class Party:
    name = "party"
    usage = "party add respondent|witness|reporter|observer <email> [name]"
    summary = "name someone the case is about or who may know something"

    def run(self, request: Request, args: list[str]) -> Result:
        if len(args) < 3 or args[0].lower() != "add" or args[1].lower() not in KINDS:
            return Result(False, f"Like: party add {'|'.join(KINDS)} <email> [name].")
        kind, email = args[1].lower(), args[2].strip("<>").lower()
        if not _EMAIL.fullmatch(email):
            return Result(False, f"{args[2]!r} is not an email address.")
        if any(m.email.lower() == email for m in request.members):
            return Result(False, f"{email} is a committee member: a member with a conflict "
                                 "recuses (reply \"help\"), they are not a party.")
        name = " ".join(args[3:])[:200] or None
        known = request.db.execute(select(Participant.id).where(
            Participant.case_id == request.case_id, Participant.role == kind,
            Participant.email_index == writes.participant_index(request.db, email))).first()
        if known is not None:
            return Result(True, f"{email} is already a {kind} in case #{request.case_id}.")
        writes.insert_participants(request.db, [{
            "case_id": request.case_id, "role": kind, "email": email, "name": name,
            "created_at": request.now}])
        request.event(EventKind.PARTY_ADDED, role=kind, email=email)
        return Result(True, f"{name or email} is now a {kind} in case #{request.case_id}. "
                            "They are not told.")


COMMAND = Party()
