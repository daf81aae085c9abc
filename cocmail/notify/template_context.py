"""What a template sees, as types: ``Context`` and its parts.

``notify/context.py`` builds one for each mail it sends; ``notify/templates.py``
builds one of sample values for the start-up render check. Both construct these
classes, so a name the sender gives and a name the check gives cannot differ: a
template that uses a name neither gives fails the check at start-up.

Every value is ready to print (times and durations in words, names not
handles). A part a kind does not get is ``None`` (or empty).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from cocmail.notify.payloads import TranscriptLine


@dataclass(frozen=True)
class CommitteeView:
    name: str
    short_name: str
    address: str


@dataclass(frozen=True)
class RecipientView:
    email: str
    name: str | None
    role: str | None
    handle: str | None


@dataclass(frozen=True)
class CaseView:
    id: int
    reference: str  # "conduct #42"
    opened_at: str
    excluded: list[str]  # the names of the members kept out of it
    channel: str
    on_behalf_of: str | None


@dataclass(frozen=True)
class KeepOut:
    name: str
    address: str  # the keep-out address that leaves this member out


@dataclass(frozen=True)
class SlaView:
    first_response: str
    first_response_by: str


@dataclass(frozen=True)
class AttachmentView:
    filename: str | None
    content_type: str
    size: str
    part: str | None = None  # which part of the source it is (to attach it again)


@dataclass(frozen=True)
class MessageView:
    subject: str | None
    sender: str
    author: str  # "the reporter", a member's name, or an address
    role: str | None
    date: str
    received_at: str
    channel: str
    text: str
    verified: bool
    attachments: list[AttachmentView]


@dataclass(frozen=True)
class FailedView:
    """The mail a failure notice is about."""

    kind: str
    recipient: str
    role: str
    description: str
    error: str
    attempts: int
    queued_at: str


@dataclass(frozen=True)
class CaseLine:
    """One case in a digest or a hand-off: metadata only."""

    id: int
    state: str
    severity: str | None
    opened_at: str
    age: str
    acknowledged: bool
    sla: str


@dataclass(frozen=True)
class FailedLine:
    """One failed mail in a digest."""

    id: int
    case: int | None
    description: str
    to: str
    attempts: int
    error: str


@dataclass(frozen=True)
class EscalationView:
    step: str
    waited: str
    paged: list[str]
    by: str
    instead_of_chair: bool
    severity: str | None
    action: str | None


@dataclass(frozen=True)
class ReminderView:
    what: str
    by: str
    due_at: str
    state: str


@dataclass(frozen=True)
class HandoffView:
    at: str
    until: str
    incoming: list[str]
    outgoing: list[str]
    staying: list[str]
    on_duty: bool  # is the recipient one of the incoming


@dataclass(frozen=True)
class PartyView:
    role: str
    email: str
    name: str | None


@dataclass(frozen=True)
class ConflictView:
    parties: list[PartyView]
    waited: str | None
    late: bool
    emergency: bool  # that there is one, not what: a measure is in a member's own words
    critical: bool


@dataclass(frozen=True)
class HistoryLine:
    at: str
    kind: str
    actor: str


@dataclass(frozen=True)
class CasefileView:
    state: str
    severity: str | None
    messages: list[MessageView]
    history: list[HistoryLine]


@dataclass(frozen=True)
class RelayView:
    by: str
    text: str


@dataclass(frozen=True)
class Context:
    """Everything one mail's template may use. ``variables()`` is what Jinja gets."""

    kind: str
    committee: CommitteeView
    recipient: RecipientView
    reply_address: str
    now: dt.datetime
    case: CaseView | None = None
    members: list[str] = field(default_factory=list)
    keep_out: list[KeepOut] = field(default_factory=list)
    sla: SlaView | None = None
    message: MessageView | None = None
    # From the payload (``notify/payloads.py``), in words.
    limit: int | None = None
    note: str | None = None
    on_duty: list[str] = field(default_factory=list)
    transcript: list[TranscriptLine] = field(default_factory=list)
    note_to: list[str] = field(default_factory=list)
    status_text: str = ""
    status_lines: list[str] = field(default_factory=list)
    status_footer: str | None = None
    # A digest, a hand-off.
    day: str | None = None
    since: str | None = None
    cases: list[CaseLine] = field(default_factory=list)
    failed_mail: list[FailedLine] = field(default_factory=list)
    # One kind's own part.
    failed: FailedView | None = None
    escalation: EscalationView | None = None
    reminder: ReminderView | None = None
    handoff: HandoffView | None = None
    conflict: ConflictView | None = None
    casefile: CasefileView | None = None
    relay: RelayView | None = None

    def variables(self) -> dict[str, Any]:
        """The top-level names of the template (the parts stay objects)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def but(self, **changes: Any) -> Context:
        return dataclasses.replace(self, **changes)
