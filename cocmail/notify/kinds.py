"""Every kind of mail cocmail sends, in one table: its template, who it is for
(``case.access.Audience``: the rule of who may receive it lives there), how
urgent it is, how it is marked as automatic (RFC 3834), what it is in words and
the type of what it carries from queueing to sending (``notify/payloads.py``).

The kind is the ``X-Cocmail-Kind`` header of each mail, and the name of its
template (``templates/<kind>.txt``, and ``.html`` when there is one).
"""

from __future__ import annotations

from dataclasses import dataclass

from cocmail.case.access import Audience
from cocmail.notify import payloads
from cocmail.notify.payloads import Payload

ACK = "ack"
REPORT = "report"
PAGE = "page"
MESSAGE = "message"
FAILURE = "failure"
NOTICE = "notice"
CONFIRMATION = "confirmation"
STATUS = "status"
DIGEST = "digest"
ESCALATION = "escalation"
HANDOFF = "handoff"
REMINDER = "reminder"
CONFLICT = "conflict"
CASEFILE = "casefile"
RELAY = "relay"


@dataclass(frozen=True)
class Kind:
    name: str
    audience: Audience
    # 0 first (the reporter's acknowledgement, the triagers' pages), 1
    # escalations and urgent conflict checks, 2 the rest: under a backlog, the
    # reporter and the triagers hear first (the outbox's ``priority``).
    priority: int
    # RFC 3834: "auto-replied" answers a message a person sent; a relay is a
    # member's own words, which the party should answer: not marked at all.
    auto_submitted: str | None
    answers: bool  # an answer to what someone sent: rate-limited per address
    description: str  # the failure notice names the mail that failed with it
    payload: type[Payload] = Payload  # what it carries (``notify/payloads.py``)

    @property
    def content(self) -> bool:
        """Does it carry case content (only to members who may read the case)?"""
        return self.audience is Audience.READER


_GENERATED = "auto-generated"
_REPLIED = "auto-replied"

KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind(ACK, Audience.REPORTER, 0, _REPLIED, True, "the acknowledgement of their report"),
    Kind(REPORT, Audience.READER, 2, _GENERATED, False, "a new report", payloads.OnDuty),
    Kind(PAGE, Audience.READER, 0, _GENERATED, False, "a triage page for a new report",
         payloads.OnDuty),
    Kind(MESSAGE, Audience.READER, 2, _GENERATED, False, "a message in the case",
         payloads.Note),
    Kind(FAILURE, Audience.READER, 2, _GENERATED, False, "a notice of a failed mail",
         payloads.FailedMail),
    Kind(NOTICE, Audience.ADDRESS, 2, _REPLIED, False,
         "a notice that automatic answers stopped for the day", payloads.AnswerLimit),
    Kind(DIGEST, Audience.MEMBER, 2, _GENERATED, False, "the daily digest", payloads.Digest),
    Kind(CONFIRMATION, Audience.SENDER, 2, _GENERATED, False,
         "the confirmation of a reply's commands", payloads.Confirmation),
    Kind(STATUS, Audience.READER, 2, _GENERATED, False, "a status mail", payloads.Status),
    Kind(ESCALATION, Audience.READER, 1, _GENERATED, False, "an escalation page",
         payloads.Escalation),
    Kind(HANDOFF, Audience.MEMBER, 2, _GENERATED, False, "the hand-off of triage duty",
         payloads.Handoff),
    Kind(REMINDER, Audience.READER, 2, _GENERATED, False, "a follow-up reminder",
         payloads.Reminder),
    Kind(CONFLICT, Audience.PENDING, 1, _GENERATED, False, "a conflict check",
         payloads.Conflict),
    Kind(CASEFILE, Audience.READER, 2, _GENERATED, False, "the case so far"),
    Kind(RELAY, Audience.PARTY, 2, None, False, "a message from the committee",
         payloads.Relay),
)}
