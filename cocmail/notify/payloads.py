"""What each kind of mail carries from the change that queued it to the moment it
is rendered: one frozen dataclass per kind (``notify/kinds.py`` names which).

The outbox keeps a payload as JSON (``outbox.data``, the field names as keys);
``load`` reads it back as the kind's type, so a template's values are built from
typed fields, not from a dict's guesses. Fields that name members hold the
handles they had when the mail was queued, as events do: what reads them maps
them to the member's handle now (``case.members.current_handles``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

P = TypeVar("P", bound="Payload")


@dataclass(frozen=True)
class Payload:
    """Nothing but the row's own columns (the case, the recipient, the message)."""


    def to_json(self) -> dict[str, Any]:
        return {f.name: _dump(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls: type[P], data: dict[str, Any]) -> P:
        hints = typing.get_type_hints(cls)
        values = {f.name: _load(hints[f.name], data[f.name])
                  for f in dataclasses.fields(cls) if f.name in data}
        return cls(**values)


@dataclass(frozen=True)
class OnDuty(Payload):
    """A new report: who is on duty for it (the page and the report say so)."""

    on_duty: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Note(Payload):
    """A message in the case; ``note``, when a member's reply was a note."""

    note: str | None = None


@dataclass(frozen=True)
class AnswerLimit(Payload):
    """The day's automatic answers to one address are used up."""

    limit: int


@dataclass(frozen=True)
class FailedMail(Payload):
    """The outbox row that could not be delivered."""

    failed: int


@dataclass(frozen=True)
class TranscriptLine:
    line: str
    applied: bool
    text: str


@dataclass(frozen=True)
class Confirmation(Payload):
    """What each command line of a member's reply did; who got its note (names)."""

    transcript: list[TranscriptLine]
    note_to: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Status(Payload):
    """A change in the case the other members hear of."""

    status_text: str
    lines: list[str] = field(default_factory=list)
    footer: str | None = None


@dataclass(frozen=True)
class Digest(Payload):
    """A member's daily digest: the cases and failed mail since ``since``."""

    handle: str
    day: dt.date
    since: dt.datetime


@dataclass(frozen=True)
class Handoff(Payload):
    """Triage duty changes hands at ``at``, until ``until``."""

    handle: str
    at: dt.datetime
    until: dt.datetime
    incoming: list[str]
    outgoing: list[str]
    cases: list[int]


@dataclass(frozen=True)
class Escalation(Payload):
    """An escalation step: who was paged, after how long (seconds), by whom."""

    step: str
    waited: int = 0
    paged: list[str] = field(default_factory=list)
    by: str = ""
    instead_of_chair: bool = False
    action: str | None = None


@dataclass(frozen=True)
class Reminder(Payload):
    """A follow-up fell due."""

    what: str
    by: str
    due_at: dt.datetime


@dataclass(frozen=True)
class Conflict(Payload):
    """The conflict check, and why it is sent again (waited seconds, a member
    seated late, an emergency measure, a critical case)."""

    waited: int | None = None
    late: bool = False
    emergency: str | None = None
    critical: bool = False


@dataclass(frozen=True)
class Relay(Payload):
    """A member's words to a party of the case."""

    note: str | None
    by: str


def _dump(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, list):
        return [_dump(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _dump(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


def _load(hint: Any, value: Any) -> Any:
    """``value`` from JSON as the type ``hint`` says."""
    if value is None:
        return None
    if isinstance(hint, types.UnionType):
        hint = next(h for h in typing.get_args(hint) if h is not type(None))
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        return [_load(item, v) for v in value]
    if hint is dt.datetime:
        return dt.datetime.fromisoformat(value)
    if hint is dt.date:
        return dt.date.fromisoformat(value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return hint(**value)
    return value
