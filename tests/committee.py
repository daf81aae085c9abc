"""An in-process committee for command and sweep tests: a store, a config, and an
intake whose clock the test moves; member replies go in as they would by mail."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cocmail import config as config_module
from cocmail.case import members
from cocmail.clock import FixedClock
from cocmail.intake.inbound import Inbound
from cocmail.intake.service import Intake
from cocmail.notify import context
from cocmail.notify.enqueue import Enqueue
from cocmail.notify.template_context import Context
from cocmail.notify.templates import Rendered, Templates
from cocmail.route.addresses import reply_address, split_recipient
from cocmail.route.tokens import make_token
from cocmail.schedule.escalation import escalate
from cocmail.schedule.handoff import queue_handoffs
from cocmail.schedule.rotation import Schedule
from cocmail.store import writes
from cocmail.store.db import Store
from cocmail.store.models import Event, Outbox, Participant
from tests.conftest import CONDUCT, MEMBERS, write_config
from tests.mail import message

KEY = b"k" * 32
OPENED = dt.datetime(2026, 11, 25, 10, tzinfo=dt.UTC)  # a Wednesday
HOUR = dt.timedelta(hours=1)
LADDER = {"sla": {"first_response": "3d", "escalation": [
    {"after": "4h", "notify": "on-duty"}, {"after": "24h", "notify": "committee"},
    {"after": "48h", "notify": "chair"}]}}
EMAIL = {m[0]: m[2] for m in MEMBERS}


class Committee:
    """A store, a config and an intake whose clock the test moves."""

    def __init__(self, store: Store, tmp_path: Path, db_url: str, **sections: Any) -> None:
        self.store = store
        self.config = config_module.load(write_config(tmp_path, db_url, {**LADDER, **sections}))
        self.enqueue = Enqueue.for_config(self.config, KEY)
        self.clock = FixedClock(OPENED)
        members.start(store, self.config.committee, OPENED)
        self.intake = Intake(store, self.config.committee, KEY, self.clock, self.enqueue)

    def report(self, to: str = CONDUCT) -> int:
        accepted = self.intake.accept(Inbound(
            message(to=to), "rita@reporter.example",
            (split_recipient(to, self.config.committee),), "smtp"))
        assert accepted.opened and accepted.case_id is not None
        return accepted.case_id

    def reply(self, case_id: int, handle: str, body: str,
              message_id: str | None = None, headers: dict[str, str] | None = None) -> None:
        with self.store.unit_of_work() as session:
            seat = session.scalars(select(Participant).where(
                Participant.case_id == case_id, Participant.handle == handle)).one()
            to = reply_address(self.config.committee, case_id, make_token(KEY, case_id, seat.id))
        self.intake.accept(Inbound(
            message(sender=EMAIL[handle], to=to, subject="Re: report", body=body,
                    message_id=message_id, headers=headers),
            EMAIL[handle], (split_recipient(to, self.config.committee),), "smtp"))

    def no_conflict(self, case_id: int, *handles: str) -> list[str]:
        """``handles`` (by default every member still to answer the case's conflict
        check) answer "no-conflict"; who did."""
        if not handles:
            with self.store.unit_of_work() as session:
                handles = tuple(session.scalars(select(Participant.handle).where(
                    Participant.case_id == case_id, Participant.role == "member",
                    Participant.cleared_at.is_(None)).order_by(Participant.id)))
        for handle in handles:
            self.reply(case_id, handle, "no-conflict\n")
        return list(handles)

    def sweep(self, at: dt.datetime) -> int:
        self.clock._now = at
        with self.store.unit_of_work() as session:
            return escalate(session.connection(), self.config, self.enqueue, at)

    def handoffs(self, at: dt.datetime) -> int:
        with self.store.unit_of_work() as session:
            return queue_handoffs(session, self.config, self.enqueue, at)

    def mails(self, kind: str) -> list[tuple[str, str]]:
        """(step, handle) of each queued mail of ``kind``, in order."""
        handle = {v: k for k, v in EMAIL.items()}
        with self.store.unit_of_work() as session:
            return [(row.step, handle[row.recipient]) for row in session.scalars(
                select(Outbox).where(Outbox.kind == kind).order_by(Outbox.id))]

    def to(self, address: str) -> Any:
        """Outbox rows to ``address`` (matched by its keyed hash, as the store does)."""
        assert self.store.keyring is not None
        return Outbox.recipient_index == self.store.keyring.index_of(address)

    def rendered(self, *where: Any) -> list[tuple[Context, Rendered]]:
        """Each outbox row matching ``where``, in order: what its template sees, and
        the mail as it would be sent."""
        found = []
        with self.store.unit_of_work() as session:
            for row in session.scalars(select(Outbox).where(*where).order_by(Outbox.id)):
                values = context.build(session, row, self.config, KEY)
                assert isinstance(values, Context), values
                found.append((values, Templates().render(row.kind, values)))
        return found

    def events(self, case_id: int) -> list[tuple[str, dict]]:
        with self.store.unit_of_work() as session:
            return [(e.kind, e.data) for e in session.scalars(
                select(Event).where(Event.case_id == case_id).order_by(Event.id))]

    def on_duty(self, at: dt.datetime) -> list[str]:
        return list(Schedule(self.config.rotation).on_duty(at))


def recuse(session: Session, case_id: int, handle: str, kind: str) -> None:
    """A recusal as a row (for tests that set one up without the command)."""
    member_id = members.handles(session.connection())[handle]
    writes.set_recusal(session.connection(), case_id, member_id, kind, OPENED)
