"""A member's reply to a case: its commands carried out in the intake's
transaction (``commands/``), and the mail that causes: the note to the other
members, status mails (acknowledged, closed, reconvened, decided, ...), a
stand-in page when a triager recuses, and one confirmation back. Whether the
member may act at all, and what, is ``case/access.py``'s to say; a reply that
may not act (a recusal, a keep-out, a failed sender check, a replay) is kept
with the case and nothing more."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Collection, Iterable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from cocmail.case import access
from cocmail.case.access import CaseAccess, Seat
from cocmail.case.events import EventKind
from cocmail.case.parties import parties
from cocmail.clock import Clock
from cocmail.commands.base import Request
from cocmail.commands.deciding import ACTIONS
from cocmail.commands.dispatch import carry_out
from cocmail.commands.plan import plan_of
from cocmail.config import Committee
from cocmail.notify import payloads
from cocmail.notify.enqueue import Enqueue, Mail, conflict_notices, message_mails
from cocmail.notify.kinds import CASEFILE, CONFIRMATION, STATUS
from cocmail.parse.auth_results import failure
from cocmail.parse.message import ParsedMessage
from cocmail.parse.reply_text import new_text
from cocmail.schedule import stand_ins
from cocmail.schedule.escalation import CRITICAL, critical, paged_members
from cocmail.store import keyring, writes
from cocmail.store.models import Event, FollowUp, Message

log = logging.getLogger(__name__)


class MemberReplies:
    def __init__(self, committee: Committee, clock: Clock, enqueue: Enqueue) -> None:
        self.committee = committee
        self.clock = clock
        self.enqueue = enqueue

    def handle(
        self, db: Connection, parsed: ParsedMessage, case: CaseAccess, participant_id: int,
        message_id: int, roots: dict[int, str], *, verified: bool = True,
        kept_out: Collection[int] = (),
    ) -> list[Mail]:
        """A member's reply: to their token address (``verified``), its commands are
        carried out, its note goes to the other members and one confirmation goes
        back; threaded by its headers only, it is a note. ``case`` is what the rule
        knows of the case; ``kept_out``, the members the reply is kept from."""
        case_id = case.case_id
        theirs = f"<{parsed.message_id}>" if parsed.message_id else None

        def confirmation(email: str, transcript: list[payloads.TranscriptLine],
                         note_to: list[str]) -> Mail:
            return Mail(CONFIRMATION, email, case_id, step=str(message_id),
                        participant_id=participant_id, in_reply_to=theirs, references=theirs,
                        payload=payloads.Confirmation(transcript, note_to))

        sender = case.seat(participant_id)
        if sender is None or (sender.standing is access.Standing.REMOVED):
            return []  # no member now: nothing goes back (the route quarantines it)
        if access.acts(sender.standing) and not verified:
            # Threaded by its headers, not sent to the member's reply address: it
            # proves nothing of who sent it, so it runs no command; it is a note.
            return message_mails(case_id, message_id, participant_id, case.seats, roots,
                                 kept_out=kept_out)
        text = new_text(parsed.text)
        key = command_key(text)
        refused = self._refusal(db, parsed, case_id, sender, message_id, key)
        if refused is not None:
            line = payloads.TranscriptLine("(your reply)", False, refused)
            return [confirmation(sender.email, [line], [])]
        request = Request(db, case, sender, message_id, self.clock.now(),
                          self.committee.members, relay_approval=self.committee.relay_approval,
                          emergency_within=self.committee.emergency_within)
        transcript, note = carry_out(request, text)
        writes.set_command_key(db, message_id, key)
        if any(event["kind"] == EventKind.PURGED for event in request.events):
            # Nothing of what came with a purge goes out: not its note, not a relay.
            note = ""
            request.mails.clear()
        writes.insert_events(db, request.events)
        # Whom this reply's mail may reach: not a member it was kept from (sent to
        # their without- address as well), for its note nor for anything it caused.
        seats = [s for s in request.seats if s.member_id not in kept_out]
        others = [s for s in access.readers(seats) if s.participant_id != participant_id]
        mails: list[Mail] = list(request.mails)
        if note:
            mails += message_mails(case_id, message_id, participant_id, seats, roots, note,
                                   kept_out=kept_out)
        mails += self._caused(db, request, sender, seats, others, roots)
        note_to = [request.name_of(s.handle) for s in others] if note else []
        mails.append(confirmation(sender.email, transcript, note_to))
        return mails

    def _refusal(self, db: Connection, parsed: ParsedMessage, case_id: int, sender: Seat,
                 message_id: int, key: str) -> str | None:
        """Why none of the reply is carried out or passed on, if so: the words of
        the confirmation that says so."""
        if not access.acts(sender.standing):
            why = ("You have stepped back from case #{case}"
                   if sender.standing is access.Standing.RECUSED
                   else "You no longer have a seat in case #{case}")
            return why.format(case=case_id) + ": your reply is kept with the case, but " \
                "nothing in it was carried out or passed on."
        failed = failure(parsed.headers, self.committee.authserv_ids, sender.email)
        if failed is not None:
            log.warning("case #%d: a reply for %s failed %s: no command carried out",
                        case_id, sender.handle, failed.split(" for ")[0])
            return (f"Your reply failed the sender checks of our mail server ({failed}): it "
                    "is kept with the case, but nothing in it was carried out or passed on. "
                    "If you sent it, send it again from your usual mail account, or ask the "
                    "operator to look at it.")
        done_at = _already_carried_out(db, case_id, message_id, parsed.message_id)
        if done_at is not None:
            # The same reply again, with other bytes (a replay, a forward, a client
            # that sent it twice): its commands ran once, they do not run again.
            return (f"This reply (Message-ID <{parsed.message_id}>) was carried out at "
                    f"{done_at:%Y-%m-%d %H:%M} UTC; nothing in it was done again.")
        earlier = _same_text(db, case_id, sender.participant_id, message_id, key)
        if earlier is not None:
            # The same words again under another Message-ID: a replay (or the
            # same reply resent). Nothing runs twice on a copy.
            return (f"This reply says what your reply of {earlier:%Y-%m-%d %H:%M} UTC said, "
                    "word for word; that one was carried out, so nothing in this one was "
                    "done again. To do it again, say it in other words (a line of note "
                    "will do).")
        return None

    def _caused(self, db: Connection, request: Request, sender: Seat, seats: list[Seat],
                others: list[Seat], roots: dict[int, str]) -> list[Mail]:
        """The mail the reply's commands cause, but its note and its confirmation."""
        case_id, message_id = request.case_id, request.message_id
        pending = [s for s in access.pending(seats) if s.participant_id != sender.participant_id]
        events = {event["kind"]: event["data"] for event in request.events}
        mails: list[Mail] = []
        if sender.standing is access.Standing.PENDING and request.seat.cleared:
            # The conflict check answered (no-conflict, or a soft recusal): the case so far.
            mails.append(Mail(CASEFILE, sender.email, case_id, step="cleared",
                              participant_id=sender.participant_id,
                              in_reply_to=roots.get(sender.participant_id),
                              references=roots.get(sender.participant_id)))
        if EventKind.PARTY_ADDED in events:
            # Those still to answer the conflict check learn who is named now.
            mails += conflict_notices(case_id, pending, f"party:{message_id}")
        if EventKind.RECUSED in events:
            mails += stand_ins.after_stepping_back(db, self.committee, self.enqueue, case_id,
                                                   sender.handle, roots, self.clock.now())
        if EventKind.EMERGENCY in events:
            mails += conflict_notices(case_id, pending, f"emergency:{message_id}",
                                      payloads.Conflict(
                                          emergency=events[EventKind.EMERGENCY]["action"]))
        mails += _status_mails(db, request, events, others, roots)
        if events.get(EventKind.SEVERITY, {}).get("after") == CRITICAL:
            mails += critical(db, self.enqueue, case_id, message_id, sender.handle, seats,
                              self.clock.now())
        return mails


def _status_mails(db: Connection, request: Request, events: dict[str, dict[str, Any]],
                  others: list[Seat], roots: dict[int, str]) -> list[Mail]:
    """What the other members hear of the reply's changes (status mails)."""
    case_id, message_id = request.case_id, request.message_id
    name = request.name_of(request.handle)

    def status(step: str, text: str, to: Iterable[Seat], lines: list[str] | None = None,
               footer: str | None = None) -> list[Mail]:
        # About this reply (``source_message_id``): held again when sent to
        # whoever this reply is kept from.
        return [Mail(STATUS, s.email, case_id, step=step, participant_id=s.participant_id,
                     source_message_id=message_id,
                     in_reply_to=roots.get(s.participant_id),
                     references=roots.get(s.participant_id),
                     payload=payloads.Status(text, lines or [], footer)) for s in to]

    mails: list[Mail] = []
    if EventKind.ACKNOWLEDGED in events:
        # Everyone cocmail paged about the case learns that they can stand down.
        paged = paged_members(db, case_id)
        mails += status("acknowledged", f"Acknowledged by {name}",
                        [s for s in others if s.handle in paged])
    for kind, verb in ((EventKind.CLOSED, "Closed"), (EventKind.REOPENED, "Reopened")):
        if kind in events:
            reason = events[kind].get("reason")
            mails += status(f"{kind}:{message_id}",
                            f"{verb} by {name}" + (f": {reason}" if reason else ""), others)
    if EventKind.EMERGENCY in events:
        measure = events[EventKind.EMERGENCY]
        mails += status(f"emergency:{message_id}",
                        f"Emergency measure by {name}: {measure['action']}", others,
                        lines=[f"Reason: {measure['reason'] or '(none given)'}",
                               f"Confirm or reverse it by {measure['due_at'][:16]} UTC."],
                        footer='Reply "emergency confirm" or "emergency reverse <reason>"; '
                               "without an answer the whole committee is paged.")
    for kind in (EventKind.EMERGENCY_CONFIRMED, EventKind.EMERGENCY_REVERSED):
        if kind in events:
            verb = kind.split("-")[1]
            mails += status(f"{kind}:{message_id}",
                            f"Emergency measure {verb} by {name}: {events[kind]['action']}",
                            others)
    if EventKind.PURGE_REQUESTED in events:
        mails += status(f"purge-requested:{message_id}",
                        f"{name} asked to purge the case: a second member's \"purge\" "
                        "within 7 days deletes its messages' text and attachments", others)
    if EventKind.RECONVENED in events:
        asked = set(events[EventKind.RECONVENED]["voters"])
        mails += status(f"reconvened:{message_id}", f"Reconvened by {name}: your vote, please",
                        [s for s in others if s.handle in asked],
                        lines=_case_summary(db, case_id),
                        footer="Your vote is needed: reply to this mail.")
    if EventKind.DECIDED in events:
        decided = events[EventKind.DECIDED]
        lines = [f"Decision: {decided['action']}"
                 + ("" if decided["consensus"] else " (recorded by override)"),
                 f"Votes: {decided['tally']}",
                 *(f"Details: {d}" for d in decided["details"]),
                 *_follow_ups(db, case_id)]
        mails += status(f"decided:{message_id}", f"Decided: {decided['action']}", others,
                        lines=lines)
    return mails


def command_key(text: str) -> str:
    """The key of a reply's new text: the same words, however spaced, give the same key.

    >>> command_key("ack\\n\\nseverity  high") == command_key(" ack\\nseverity high ")
    True
    """
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()


def _same_text(db: Connection, case_id: int, participant_id: int, message_id: int,
               key: str) -> dt.datetime | None:
    """When the same member's reply with the same new text was carried out in this
    case, if it was."""
    return db.execute(select(func.min(Message.received_at)).where(
        Message.case_id == case_id, Message.command_key == keyring.keyed(db, key),
        Message.participant_id == participant_id, Message.id != message_id)).scalar()


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
