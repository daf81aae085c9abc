"""Deciding: ``reconvene``, ``vote <action> [details]``, ``decide <action> [override]``.

``reconvene`` moves a case to deciding and asks every member who may vote for
their vote, with the plan and the parties. A member who may vote has a seat in
the case and has not recused (a soft conflict may read, not vote: the rule is
``case/access.py``'s). Each member's
last ``vote`` counts. ``decide <action>`` records the decision when every
member who may vote has voted that action (consensus); otherwise it is refused
with the tally, unless it says ``override``, which records the decision with the
tally. The decision goes to the members as a status mail.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import select, update

from cocmail.case import access, members
from cocmail.case.events import EventKind
from cocmail.commands.base import Request, Result
from cocmail.store.models import Case, Event

ACTIONS = ("no-action", "private-warning", "coaching", "organisational-recommendation",
           "platform-ban", "public-statement", "refer")


def voters(request: Request) -> list[str]:
    """The members who may vote on the case (``case/access.py``), by handle."""
    return [s.handle for s in access.voters(request.seats)]


def votes(request: Request) -> dict[str, dict[str, Any]]:
    """Each member's last vote (this reply's included), by their handle now: a vote
    cast under a handle they had before is still theirs."""
    now = members.current_handles(request.db)
    found: dict[str, dict[str, Any]] = {}
    for actor, data in request.db.execute(select(Event.actor, Event.data).where(
            Event.case_id == request.case_id, Event.kind == EventKind.VOTE).order_by(Event.id)):
        found[now.get(actor, actor)] = data
    for event in request.events:
        if event["kind"] == "vote":
            found[event["actor"]] = event["data"]
    return found


def tally(request: Request) -> str:
    cast = votes(request)
    counts = Counter(cast[h]["action"] for h in voters(request) if h in cast)
    missing = [h for h in voters(request) if h not in cast]
    text = ", ".join(f"{action} {n}" for action, n in counts.most_common()) or "no votes"
    return text + (f"; not voted: {', '.join(missing)}" if missing else "")


def _state(request: Request) -> str:
    return str(request.db.execute(select(Case.state).where(
        Case.id == request.case_id)).scalar_one())


class Reconvene:
    name = "reconvene"
    usage = "reconvene"
    summary = "move the case to deciding and ask every member who may vote for their vote"

    def run(self, request: Request, args: list[str]) -> Result:
        state = _state(request)
        if state in ("closed", "decided"):
            return Result(False, f"Case #{request.case_id} is {state}; reopen it first.")
        if state == "deciding":
            return Result(True, f"Case #{request.case_id} is already being decided: "
                                f"{tally(request)}.")
        request.db.execute(update(Case).where(Case.id == request.case_id).values(
            state="deciding"))
        request.event(EventKind.RECONVENED, before=state, voters=voters(request))
        return Result(True, f"Case #{request.case_id} is being decided; "
                            f"{', '.join(voters(request))} are asked for their vote.")


class Vote:
    name = "vote"
    usage = "vote <action> [details]"
    summary = "your vote: " + ", ".join(ACTIONS)

    def run(self, request: Request, args: list[str]) -> Result:
        if _state(request) != "deciding":
            return Result(False, "Votes are taken once the case is being decided: "
                                 "reply \"reconvene\" first.")
        if request.handle not in voters(request):
            return Result(False, "You have recused from this case: a member with a "
                                 "conflict may not vote.")
        if not args or args[0].lower() not in ACTIONS:
            return Result(False, f"Vote for one of {', '.join(ACTIONS)}, like: "
                                 "vote coaching two sessions with the respondent.")
        action, details = args[0].lower(), " ".join(args[1:])[:500]
        request.event(EventKind.VOTE, action=action, details=details)
        return Result(True, f"Your vote: {action}" + (f" ({details})" if details else "")
                            + f". Tally: {tally(request)}.")


class Decide:
    name = "decide"
    usage = "decide <action> [override]"
    summary = "record the decision: needs every voter's vote for it, or override"

    def run(self, request: Request, args: list[str]) -> Result:
        if _state(request) != "deciding":
            return Result(False, "A decision comes after \"reconvene\" and the votes.")
        if request.handle not in voters(request):
            return Result(False, "You have recused from this case: you cannot decide it.")
        if not args or args[0].lower() not in ACTIONS or (
                len(args) > 1 and [a.lower() for a in args[1:]] != ["override"]):
            return Result(False, f"Like: decide coaching, or decide coaching override. "
                                 f"Actions: {', '.join(ACTIONS)}.")
        action, override = args[0].lower(), len(args) > 1
        cast = votes(request)
        eligible = voters(request)
        consensus = bool(eligible) and all(
            cast.get(h, {}).get("action") == action for h in eligible)
        summary = tally(request)
        if not consensus and not override:
            return Result(False, f"The decision needs consensus: {summary}. Vote again, "
                                 f"or reply \"decide {action} override\" to record it with "
                                 "this tally.")
        details = [cast[h].get("details") for h in eligible
                   if cast.get(h, {}).get("action") == action and cast[h].get("details")]
        request.db.execute(update(Case).where(Case.id == request.case_id).values(
            state="decided", decision=action))
        request.event(EventKind.DECIDED, action=action, consensus=consensus, tally=summary,
                      details=details)
        return Result(True, f"Decided: {action}" + ("" if consensus else
                                                   f" (override; tally: {summary})")
                            + ". The members are told.")


RECONVENE = Reconvene()
VOTE = Vote()
DECIDE = Decide()
