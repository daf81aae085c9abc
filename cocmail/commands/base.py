"""What every member command shares: the request it works on, the result it
reports, and how a reply's first lines are split into commands and a note."""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from sqlalchemy.engine import Connection

from cocmail.case import events
from cocmail.case.access import CaseAccess, Seat, Standing
from cocmail.case.events import EventKind
from cocmail.config import Member, member_of

_ENDINGS = ("thanks", "thank you", "thx", "--", "-- ")


@dataclass
class Request:
    """One member's reply in one case, inside the intake's transaction."""

    db: Connection
    case: CaseAccess  # what the rule knows of the case (``case/access.py``)
    seat: Seat  # the sender's seat; a command that changes it (no-conflict) replaces it
    message_id: int  # the reply, as stored
    now: dt.datetime
    members: tuple[Member, ...]
    note: str = ""  # the text after the command lines (what "relay" sends)
    relay_approval: tuple[str, ...] = ()  # roles a relay to needs a second member's approve
    emergency_within: dt.timedelta = dt.timedelta(hours=24)
    mails: list[Any] = field(default_factory=list)  # outbox Mails the commands cause
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def case_id(self) -> int:
        return self.case.case_id

    @property
    def handle(self) -> str:
        """The member who sent it."""
        return self.seat.handle

    @property
    def participant_id(self) -> int:
        return self.seat.participant_id

    @property
    def seats(self) -> tuple[Seat, ...]:
        """The case's seats, the sender's as it is now."""
        return tuple(self.seat if s.participant_id == self.seat.participant_id else s
                     for s in self.case.seats)

    def stand(self, standing: Standing) -> None:
        """The sender's standing changed (they answered the conflict check)."""
        self.seat = replace(self.seat, standing=standing)

    def event(self, kind: EventKind, **data: Any) -> None:
        self.events.append(events.row(self.case_id, self.now, kind, data, actor=self.handle,
                                      message_id=self.message_id))

    def name_of(self, handle: str) -> str:
        member = member_of(self.members, handle)
        return member.name if member is not None else handle


@dataclass(frozen=True)
class Result:
    applied: bool
    text: str  # one or two sentences for the confirmation


class Command(Protocol):
    name: str
    usage: str
    summary: str

    def run(self, request: Request, args: list[str]) -> Result: ...


# A reply's processing stops after this many lines that look like mistyped commands.
MAX_UNKNOWN = 5


def split(text: str, names: Collection[str]) -> tuple[list[tuple[str, str, list[str]]], str]:
    """The command lines at the top of ``text`` as (line, name, arguments), and the
    note: the text after them.

    A short line whose first word is close to a command's name ("recuce", "vot")
    is a mistyped command: it is listed with the name ``""`` (refused as unknown)
    and the scan goes on. After ``MAX_UNKNOWN`` of them it stops: the last entry
    is named ``"stop"``, and nothing after it is run or passed on.

    >>> split("ACK\\nseverity high\\n\\nI will call the reporter.", {"ack", "severity"})
    ([('ACK', 'ack', []), ('severity high', 'severity', ['high'])], 'I will call the reporter.')
    >>> split("ack\\nthanks\\nAlice", {"ack"})
    ([('ack', 'ack', [])], '')
    >>> split("Acknowledged, looking at it", {"ack"})
    ([], 'Acknowledged, looking at it')
    >>> split("recuce hard\\nack\\nSee you", {"ack", "recuse"})
    ([('recuce hard', '', ['hard']), ('ack', 'ack', [])], 'See you')
    """
    lines = text.split("\n")
    commands: list[tuple[str, str, list[str]]] = []
    unknown = 0
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        if not line:
            index += 1
            continue
        if line.lower().rstrip("!.,") in _ENDINGS:
            return commands, ""
        words = line.split()
        name = words[0].lower()
        if name not in names:
            if len(words) > 4 or not difflib.get_close_matches(name, names, 1, 0.75):
                break
            unknown += 1
            commands.append((line, "", words[1:]))
            if unknown == MAX_UNKNOWN:
                commands.append(("(the rest of your reply)", "stop", []))
                return commands, ""
            index += 1
            continue
        commands.append((line, name, words[1:]))
        index += 1
    return commands, "\n".join(lines[index:]).strip()
