"""The Jinja2 templates of every mail cocmail writes.

Each kind of mail is ``<kind>.txt`` (the plain text, always) and, optionally,
``<kind>.html`` (an HTML alternative, autoescaped). A template sets its subject
with ``{% set subject = "..." %}``; cocmail puts the case tag in front. The
shipped templates live in ``templates/`` (installed as ``cocmail.templates``);
an operator's folder (``templates.directory``) is searched first, file by file.

Undefined names are errors, not empty strings: an override with a typo fails
``check()`` at start-up, with the file and the reason, instead of sending a mail
with a hole in it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from cocmail.errors import ConfigError
from cocmail.notify.kinds import KINDS
from cocmail.notify.payloads import TranscriptLine
from cocmail.notify.template_context import (
    AttachmentView,
    CasefileView,
    CaseLine,
    CaseView,
    CommitteeView,
    ConflictView,
    Context,
    EscalationView,
    FailedLine,
    FailedView,
    HandoffView,
    HistoryLine,
    KeepOut,
    MessageView,
    PartyView,
    RecipientView,
    RelayView,
    ReminderView,
    SlaView,
)


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str | None


def shipped_folder() -> Path:
    return Path(str(resources.files("cocmail.templates")))


class Templates:
    def __init__(self, override: Path | None = None) -> None:
        folders = [str(override)] if override is not None else []
        folders.append(str(shipped_folder()))
        self.override = override
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(folders),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",),
                                                default_for_string=False, default=False),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def render(self, kind: str, context: Context) -> Rendered:
        variables = context.variables()
        module = self.env.get_template(f"{kind}.txt").make_module(variables)
        subject = str(getattr(module, "subject", ""))
        html = None
        try:
            html_template = self.env.get_template(f"{kind}.html")
        except jinja2.TemplateNotFound:
            pass
        else:
            html = html_template.render(variables)
        return Rendered(subject, str(module), html)

    def check(self) -> None:
        """Render every kind with sample values; raise ``ConfigError`` naming the
        template that does not render (start-up calls this)."""
        for kind, context in ((k, c) for k in KINDS for c in sample_contexts(k)):
            try:
                self.render(kind, context)
            except jinja2.TemplateNotFound as exc:
                raise ConfigError("templates.directory", f"template {exc.name} is missing") \
                    from None
            except jinja2.TemplateError as exc:
                where = getattr(exc, "filename", None) or f"{kind}.txt"
                line = getattr(exc, "lineno", None)
                raise ConfigError(
                    "templates.directory",
                    f"{where}{f' line {line}' if line else ''} does not render: {exc}",
                ) from None


def sample_contexts(kind: str) -> list[Context]:
    """``sample_context`` once for each branch of the kind's template."""
    context = sample_context(kind)
    if kind == "ack":
        assert context.case is not None
        filed = replace(context.case, channel="chat", on_behalf_of="rita@example.net")
        return [context, context.but(case=filed)]
    if kind == "conflict":
        plain = context.conflict
        assert plain is not None
        changes: list[dict[str, Any]] = [{"parties": []}, {"late": True},
                                         {"waited": "4 hours"}, {"emergency": True},
                                         {"critical": True}]
        return [context, *(context.but(conflict=replace(plain, **change))
                           for change in changes)]
    if kind == "casefile":
        return [context, context.but(recipient=replace(context.recipient, handle="mediator"))]
    if kind != "escalation":
        return [context]
    assert context.escalation is not None
    return [context.but(escalation=replace(context.escalation, step=step))
            for step in ("on-duty", "committee", "chair", "critical", "emergency")]


def sample_context(kind: str) -> Context:
    """A context of the type ``notify/context.py`` gives each template, with sample
    values in every part, for ``check``."""
    when = "Wednesday 25 November 2026, 10:00 UTC"
    message = MessageView(
        subject="Sample subject", sender="Rita Reporter <rita@example.net>",
        author="the reporter", role="reporter", date="Wed, 25 Nov 2026 10:00",
        received_at=when, channel="email", text="Sample text.", verified=True,
        attachments=[AttachmentView("photo.jpg", "image/jpeg", "1.2 MB", "2")])
    return Context(
        kind=kind,
        committee=CommitteeView("Example Committee", "conduct", "conduct@example.org"),
        recipient=RecipientView("alice@example.org", "Alice Example", "member", "alice"),
        reply_address="conduct+42.abcdefghijklmnop@example.org",
        now=dt.datetime(2026, 11, 25, 10, tzinfo=dt.UTC),
        case=CaseView(id=42, reference="conduct #42", opened_at=when,
                      excluded=["Bob Example"], channel="email", on_behalf_of=None),
        members=["Alice Example", "Carol Example"],
        keep_out=[KeepOut("Alice Example", "conduct+without-alice@example.org")],
        sla=SlaView("3 days", "Saturday 28 November 2026, 10:00 UTC"),
        message=message,
        limit=10,
        note=None,
        on_duty=["Alice Example", "Carol Example"],
        transcript=[TranscriptLine("ack", True, "Case #42 is acknowledged."),
                    TranscriptLine("severity urgent", False,
                                   "Severity must be one of low, medium, high, critical.")],
        note_to=["Carol Example"],
        status_text="Acknowledged by Alice Example",
        status_lines=["Decision: coaching", "Votes: coaching 3"],
        status_footer=None,
        day="Wednesday 25 November 2026",
        since="Tuesday 24 November 2026, 08:00 UTC",
        cases=[CaseLine(id=42, state="new", severity=None, opened_at=when, age="4 hours",
                        acknowledged=False, sla="answer due in 2 days")],
        failed_mail=[FailedLine(id=7, case=42, description="the acknowledgement of their report",
                                to="the reporter", attempts=1, error="550 5.1.1 no such user")],
        failed=FailedView(kind="ack", recipient="rita@example.net", role="reporter",
                          description="the acknowledgement of their report",
                          error="550 5.1.1 no such user", attempts=1, queued_at=when),
        escalation=EscalationView(step="on-duty", waited="4 hours",
                                  paged=["Alice Example", "Carol Example"], by="Carol Example",
                                  instead_of_chair=False, severity="high",
                                  action="platform-ban"),
        reminder=ReminderView(what="the ban ends: check in with the respondent",
                              by="Alice Example", due_at="Monday 1 March 2027, 09:00 CET",
                              state="closed"),
        handoff=HandoffView(at="Monday 30 November 2026, 09:00 UTC",
                            until="Monday 7 December 2026, 09:00 UTC",
                            incoming=["Alice Example", "Carol Example"],
                            outgoing=["Bob Example", "Alice Example"], staying=["Alice Example"],
                            on_duty=True),
        conflict=ConflictView(parties=[PartyView("respondent", "sam@example.com", "Sam")],
                              waited=None, late=False, emergency=False, critical=False),
        casefile=CasefileView(state="triaged", severity="high",
                              messages=[replace(message, attachments=[])],
                              history=[HistoryLine(when, "opened", "reporter")]),
        relay=RelayView(by="Alice Example", text="Could you tell us when it happened?"),
    )
