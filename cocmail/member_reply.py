"""A member's verified reply to a case: its commands carried out in the intake's
transaction (``commands/``), and the mail that causes: the note to the other
members, status mails (acknowledged, closed, reconvened, decided, ...), a
stand-in page when a triager recuses, and one confirmation back."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from cocmail.authresults import failure
from cocmail.clock import Clock
from cocmail.commands.base import Request
from cocmail.commands.deciding import ACTIONS
from cocmail.commands.party import parties
from cocmail.commands.plan import plan_of
from cocmail.commands.reply import carry_out
from cocmail.config import MEDIATOR, Committee
from cocmail.outbox.enqueue import (
    CASEFILE,
    CONFIRMATION,
    PAGE,
    STATUS,
    Enqueue,
    Mail,
    Seat,
    conflict_notices,
    message_mails,
)
from cocmail.parse import ParsedMessage
from cocmail.replytext import new_text
from cocmail.schedule.escalation import CRITICAL, critical, paged_members
from cocmail.store import writes
from cocmail.store.models import Case, Event, FollowUp, Message, Participant, Recusal

log = logging.getLogger(__name__)


class MemberReplies:
    def __init__(self, committee: Committee, clock: Clock, enqueue: Enqueue) -> None:
        self.committee = committee
        self.clock = clock
        self.enqueue = enqueue

    def handle(
        self, db: Connection, parsed: ParsedMessage, case_id: int, participant_id: int,
        message_id: int, seats: list[Seat], roots: dict[int, str],
    ) -> list[Mail]:
        """A member's reply to their token address: its commands are carried out, its
        note goes to the other members, and one confirmation goes back."""
        theirs = f"<{parsed.message_id}>" if parsed.message_id else None

        def confirmation(email: str, transcript: list[dict[str, object]],
                         note_to: list[str]) -> Mail:
            return Mail(CONFIRMATION, email, case_id, step=str(message_id),
                        participant_id=participant_id, in_reply_to=theirs, references=theirs,
                        data={"transcript": transcript, "note_to": note_to})

        sender = next((s for s in seats if s.participant_id == participant_id), None)
        if sender is None or not sender.handle:  # recused since the reply address was given
            email = db.execute(select(Participant.email).where(
                Participant.id == participant_id)).scalar_one()
            return [confirmation(email, [{
                "line": "(your reply)", "applied": False,
                "text": f"You have stepped back from case #{case_id}: your reply is kept "
                        "with the case, but nothing in it was carried out or passed on."}], [])]
        failed = failure(parsed.headers, self.committee.authserv_ids, sender.email)
        if failed is not None:
            log.warning("case #%d: a reply for %s failed %s: no command carried out",
                        case_id, sender.handle, failed.split(" for ")[0])
            return [confirmation(sender.email, [{
                "line": "(your reply)", "applied": False,
                "text": f"Your reply failed the sender checks of our mail server ({failed}): "
                        "it is kept with the case, but nothing in it was carried out or "
                        "passed on. If you sent it, send it again from your usual mail "
                        "account, or ask the operator to look at it."}], [])]
        done_at = _already_carried_out(db, case_id, message_id, parsed.message_id)
        if done_at is not None:
            # The same reply again, with other bytes (a replay, a forward, a client
            # that sent it twice): its commands ran once, they do not run again.
            return [confirmation(sender.email, [{
                "line": "(your reply)", "applied": False,
                "text": f"This reply (Message-ID <{parsed.message_id}>) was carried out "
                        f"at {done_at:%Y-%m-%d %H:%M} UTC; nothing in it was done again."}],
                [])]
        readers = [s for s in seats if s.cleared]
        request = Request(db, case_id, message_id, sender.handle, self.clock.now(),
                          self.committee.members,
                          tuple(s.handle for s in readers if s.handle),
                          participant_id=participant_id, cleared=sender.cleared,
                          relay_approval=self.committee.relay_approval,
                          emergency_within=self.committee.emergency_within)
        transcript, note = carry_out(request, new_text(parsed.text))
        if any(event["kind"] == "purged" for event in request.events):
            note = ""  # the text that came with a purge is not passed on
        writes.insert_events(db, request.events)
        others = [s for s in readers if s.participant_id != participant_id]
        pending = [s for s in seats if not s.cleared and s.participant_id != participant_id]
        mails: list[Mail] = list(request.mails)
        if note:
            mails += message_mails(case_id, message_id, participant_id, readers, roots, note)
        kinds = {event["kind"]: event for event in request.events}
        if "no-conflict" in kinds:
            mails.append(Mail(CASEFILE, sender.email, case_id, step="cleared",
                              participant_id=participant_id,
                              in_reply_to=roots.get(participant_id),
                              references=roots.get(participant_id)))
        if "party-added" in kinds:
            # Those still to answer the conflict check learn who is named now.
            mails += conflict_notices(case_id, pending, f"party:{message_id}")
        name = request.name_of(sender.handle)

        def status(step: str, text: str, to: Iterable[Seat], **data: Any) -> list[Mail]:
            return [Mail(STATUS, s.email, case_id, step=step, participant_id=s.participant_id,
                         in_reply_to=roots.get(s.participant_id),
                         references=roots.get(s.participant_id),
                         data={"status_text": text, **data}) for s in to]

        if "acknowledged" in kinds:
            # Everyone cocmail paged about the case learns that they can stand down.
            paged = paged_members(db, case_id)
            mails += status("acknowledged", f"Acknowledged by {name}",
                            [s for s in others if s.handle in paged])
        for kind, verb in (("closed", "Closed"), ("reopened", "Reopened")):
            if kind in kinds:
                reason = kinds[kind]["data"].get("reason")
                mails += status(f"{kind}:{message_id}",
                                f"{verb} by {name}" + (f": {reason}" if reason else ""), others)
        if "recused" in kinds:
            mails += self._replace_triager(db, case_id, sender.handle, seats, roots)
            mails += self._seat_mediator(db, case_id)
        if "emergency" in kinds:
            measure = kinds["emergency"]["data"]
            mails += status(f"emergency:{message_id}",
                            f"Emergency measure by {name}: {measure['action']}", others,
                            lines=[f"Reason: {measure['reason'] or '(none given)'}",
                                   f"Confirm or reverse it by {measure['due_at'][:16]} UTC."],
                            footer='Reply "emergency confirm" or "emergency reverse <reason>"; '
                                   "without an answer the whole committee is paged.")
            mails += conflict_notices(case_id, pending, f"emergency:{message_id}",
                                      emergency=measure["action"])
        for kind in ("emergency-confirmed", "emergency-reversed"):
            if kind in kinds:
                verb = kind.split("-")[1]
                mails += status(f"{kind}:{message_id}",
                                f"Emergency measure {verb} by {name}: "
                                f"{kinds[kind]['data']['action']}", others)
        if "purge-requested" in kinds:
            mails += status(f"purge-requested:{message_id}",
                            f"{name} asked to purge the case: a second member's \"purge\" "
                            "within 7 days deletes its messages' text and attachments", others)
        if "reconvened" in kinds:
            asked = set(kinds["reconvened"]["data"]["voters"])
            mails += status(f"reconvened:{message_id}", f"Reconvened by {name}: your vote, please",
                            [s for s in others if s.handle in asked],
                            lines=_case_summary(db, case_id),
                            footer="Your vote is needed: reply to this mail.")
        if "decided" in kinds:
            decided = kinds["decided"]["data"]
            lines = [f"Decision: {decided['action']}"
                     + ("" if decided["consensus"] else " (recorded by override)"),
                     f"Votes: {decided['tally']}",
                     *(f"Details: {d}" for d in decided["details"]),
                     *_follow_ups(db, case_id)]
            mails += status(f"decided:{message_id}", f"Decided: {decided['action']}", others,
                            lines=lines)
        if kinds.get("severity", {}).get("data", {}).get("after") == CRITICAL:
            mails += critical(db, self.enqueue, case_id, message_id, sender.handle, seats,
                              self.clock.now())
        note_to = [request.name_of(s.handle or "") for s in others] if note else []
        mails.append(confirmation(sender.email, transcript, note_to))
        return mails

    def _replace_triager(self, db: Connection, case_id: int, handle: str, seats: list[Seat],
                         roots: dict[int, str]) -> list[Mail]:
        """A triager recused from a case nobody has acknowledged: page the next member
        of the rotation who can act on it instead."""
        paged = paged_members(db, case_id)
        waiting = db.execute(select(Case.acknowledged_at, Case.closed_at).where(
            Case.id == case_id)).one()
        rotation = self.enqueue.rotation
        if handle not in paged or waiting.acknowledged_at or waiting.closed_at or not rotation:
            return []
        recused = set(db.execute(select(Recusal.handle).where(
            Recusal.case_id == case_id)).scalars())
        able = {s.handle: s for s in seats if s.handle and s.handle not in recused}
        order = list(rotation.order)
        start = order.index(handle) if handle in order else 0
        candidates = [order[(start + k) % len(order)] for k in range(1, len(order))]
        stand_in = next((h for h in candidates if h in able and h not in paged), None)
        now = self.clock.now()
        if stand_in is None:
            log.error("case #%d: %s recused and nobody else can triage it", case_id, handle)
            writes.insert_events(db, [{"case_id": case_id, "at": now, "kind": "nobody-paged",
                                       "actor": "cocmail", "message_id": None,
                                       "data": {"members": [], "instead_of": handle}}])
            return []
        writes.insert_events(db, [{"case_id": case_id, "at": now, "kind": "paged",
                                   "actor": "cocmail", "message_id": None,
                                   "data": {"members": [stand_in], "instead_of": handle}}])
        first = db.execute(select(func.min(Message.id)).where(
            Message.case_id == case_id)).scalar_one()
        seat = able[stand_in]
        writes.clear(db, [seat.participant_id], now)  # a triager reads the report
        on_duty = [h for h in paged if h != handle and h not in recused] + [stand_in]
        return [Mail(PAGE, seat.email, case_id, participant_id=seat.participant_id,
                     source_message_id=first, in_reply_to=roots.get(seat.participant_id),
                     references=roots.get(seat.participant_id), data={"on_duty": on_duty})]

    def _seat_mediator(self, db: Connection, case_id: int) -> list[Mail]:
        """After a recusal: when fewer than two members remain able to act on the
        case, its mediator (``committee.mediator``) gets a seat, cleared, with
        their own reply address and every command, and the case so far."""
        recused = set(db.execute(select(Recusal.handle).where(
            Recusal.case_id == case_id)).scalars())
        seats = db.execute(select(Participant.handle).where(
            Participant.case_id == case_id, Participant.role == "member")).scalars().all()
        able = [h for h in seats if h and h not in recused and h != MEDIATOR]
        if len(able) >= 2 or MEDIATOR in seats:
            return []
        now = self.clock.now()
        mediator = self.committee.mediator
        if mediator is None:
            log.error("case #%d: %d member(s) able to act and no mediator configured",
                      case_id, len(able))
            return []
        pid = writes.insert_participants(db, [{
            "case_id": case_id, "role": "member", "email": mediator, "name": "Mediator",
            "handle": MEDIATOR, "created_at": now, "cleared_at": now}])[0]
        writes.insert_events(db, [{"case_id": case_id, "at": now, "kind": "mediator",
                                   "actor": "cocmail", "message_id": None,
                                   "data": {"able": able}}])
        log.info("case #%d: %d member(s) able to act; the mediator is given the case",
                 case_id, len(able))
        return [Mail(CASEFILE, mediator, case_id, step=MEDIATOR, participant_id=pid)]


def _already_carried_out(db: Connection, case_id: int, message_id: int,
                         header_id: str | None) -> dt.datetime | None:
    """When another stored message with the same Message-ID was taken in this case
    (the events it caused name it), or None: a reply is acted on once."""
    if not header_id:
        return None
    earlier = select(Message.id).where(Message.case_id == case_id,
                                       Message.message_id == header_id,
                                       Message.id != message_id)
    return db.execute(select(func.min(Event.at)).where(
        Event.case_id == case_id, Event.message_id.in_(earlier))).scalar()


def _case_summary(db: Connection, case_id: int) -> list[str]:
    """What a member needs to vote: the plan's items and the parties."""
    lines = ["Plan:"] + [f"  {item}: {state}" for item, state in plan_of(db, case_id).items()]
    named = parties(db, case_id)
    lines.append("Parties:" if named else "Parties: none named")
    lines += [f"  {role}: {name + ' ' if name else ''}<{email}>" for role, email, name in named]
    lines.append("Actions: " + ", ".join(ACTIONS))
    lines.append('Reply "vote <action> [details]", like: vote coaching two sessions.')
    return lines


def _follow_ups(db: Connection, case_id: int) -> list[str]:
    return [f"Follow-up {row.due_at:%Y-%m-%d %H:%M} UTC: {row.what}" for row in db.execute(
        select(FollowUp.due_at, FollowUp.what).where(
            FollowUp.case_id == case_id, FollowUp.reminded_at.is_(None))
        .order_by(FollowUp.due_at))]
