"""``relay <party>``: outreach. The text after the command lines goes to that
party from the conduct address, opening with a line that names the member as
the committee's representative, with the party's own token address as
Reply-To: their answers come back into the case, to the members only.

``<party>`` is a role (respondent, witness, reporter, observer) when the case
has one person in it, or their address. A relay to a role listed in
``committee.relay_approval`` (the reporter, by default) is held until a second
member answers ``approve``, so two people check it for identifying details;
whether it is held follows the person (``access.relay_needs_approval``): anyone
who reported in the case counts as its reporter, whatever role they were
added under.
The members get the text too, as the reply's note.
"""

from __future__ import annotations

from sqlalchemy import select, update

from cocmail.case import access, members
from cocmail.case.access import REPORTER_ROLES
from cocmail.case.events import EventKind
from cocmail.commands.base import Request, Result
from cocmail.notify import payloads
from cocmail.notify.enqueue import Mail
from cocmail.notify.kinds import RELAY
from cocmail.store import writes
from cocmail.store.models import Outbox


class Relay:
    name = "relay"
    usage = "relay <role|email>"
    summary = "send the text below to a party, as the committee's representative"

    def run(self, request: Request, args: list[str]) -> Result:
        if len(args) != 1:
            return Result(False, "Like: relay reporter, or: relay sam@example.com; the text "
                                 "to send goes below the command lines.")
        if not request.note.strip():
            return Result(False, "There is no text to send: write it below the command lines.")
        wanted = args[0].strip("<>").lower()
        # "reporter" is also the person a member filed a report for ("reported-by"),
        # never the member who holds the reporter's seat in such a case.
        roles = (REPORTER_ROLES if wanted == "reporter" else (wanted,))
        members = {m.email.lower() for m in request.members}
        # Read again: a party added by this same reply counts.
        case = access.load(request.db, [request.case_id])[request.case_id]
        found = [(pid, role, email) for pid, (role, email) in sorted(case.others.items())
                 if role in access.PARTY_ROLES and (role in roles or email.lower() == wanted)
                 and email.lower() not in members]
        if not found:
            return Result(False, f"Nobody in case #{request.case_id} is {wanted!r}: name a "
                                 "party first (party add ...), or use their address.")
        if len(found) > 1:
            listed = ", ".join(email for _, _, email in found)
            return Result(False, f"Case #{request.case_id} has more than one {wanted}: "
                                 f"relay to one address ({listed}).")
        party_id, party_role, email = found[0]
        role = "reporter" if party_role in REPORTER_ROLES else party_role
        key = writes.participant_index(request.db, email)
        held = access.relay_needs_approval(role, key, case.reporter_keys, request.relay_approval)
        request.mails.append(Mail(RELAY, email, request.case_id,
                                  step=f"{request.message_id}:{party_id}",
                                  participant_id=party_id, held=held,
                                  payload=payloads.Relay(request.note, request.handle)))
        request.event(EventKind.RELAYED, role=role, participant=party_id, held=held)
        if held:
            who = role if role == "reporter" or key not in case.reporter_keys \
                else f"{role} (who reported in this case)"
            return Result(True, f"Your text to the {who} waits for a second member's "
                                "\"approve\" before it is sent; the other members have it.")
        return Result(True, f"Your text goes to the {role}, from the committee's "
                            "address; their answer comes back to the members.")


class Approve:
    name = "approve"
    usage = "approve"
    summary = "send the relays another member is waiting to send"

    def run(self, request: Request, args: list[str]) -> Result:
        held = request.db.execute(select(Outbox.id, Outbox.data).where(
            Outbox.case_id == request.case_id, Outbox.kind == RELAY,
            Outbox.status == "held")).all()
        # Who wrote each one, by their handle now (they may have been renamed since).
        now = members.current_handles(request.db)
        by = {row.id: payloads.Relay.from_json(row.data).by for row in held}
        theirs = [row.id for row in held if now.get(by[row.id], by[row.id]) != request.handle]
        if not theirs:
            if held:
                return Result(False, "A relay needs the approval of a member other than the "
                                     "one who wrote it.")
            return Result(False, f"No relay in case #{request.case_id} waits for approval.")
        request.db.execute(update(Outbox).where(Outbox.id.in_(theirs), Outbox.status == "held")
                           .values(status="queued", due_at=request.now))
        request.event(EventKind.APPROVED, relays=theirs)
        return Result(True, f"Approved: {len(theirs)} relay{'s' if len(theirs) != 1 else ''} "
                            "on their way.")


RELAY_COMMAND = Relay()
APPROVE = Approve()
