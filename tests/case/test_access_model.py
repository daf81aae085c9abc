"""The rule of who may see a case, checked against a small model of who is
entitled, over random sequences of what happens to a committee: reports to the
bare and the ``without-`` addresses, the reporter's replies to her reply address
or threaded to her acknowledgement, the same bytes delivered again to more
recipients, members' ``no-conflict``, ``recuse``, ``party add``, ``relay``,
``approve``, ``purge``, notes, forged replies, roster changes (a member added,
removed, renamed, given a new address), restarts and sweeps.

In process, on a store the test owns and a clock it moves (Hypothesis's
``RuleBasedStateMachine``). After every step, everything the outbox would send
now is rendered exactly as the worker renders it, and each mail is checked:
case content goes only to a member the model allows to read it, and no text of
a message reaches a member it was kept from; a conflict check carries no
content and never the reporter's address; a relay to whoever reported waits for
a second member; nothing of a purged case goes out; and no reply from anyone
but an entitled member changes the case."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select

from cocmail import config as config_module
from cocmail.case import members
from cocmail.clock import FixedClock
from cocmail.errors import AddressError
from cocmail.intake.inbound import Inbound
from cocmail.intake.service import Intake
from cocmail.notify import context
from cocmail.notify.enqueue import Enqueue
from cocmail.notify.kinds import KINDS
from cocmail.notify.templates import Templates
from cocmail.route.addresses import UnknownKeepOut, reply_address, split_recipient
from cocmail.route.tokens import make_token
from cocmail.schedule.escalation import escalate
from cocmail.schedule.late_members import seat_late_members
from cocmail.store import migrate
from cocmail.store.db import Store
from cocmail.store.models import Case, Event, Outbox, Participant, Recusal
from tests.conftest import keyed
from tests.mail import message

KEY = b"model-key-0123456789abcdefghijkl"
DOMAIN = "conduct.example.org"
CONDUCT = f"conduct@{DOMAIN}"
MEDIATOR = "mediator@outside.example"
START = dt.datetime(2026, 11, 25, 10, tzinfo=dt.UTC)
REPORTERS = ("rita@reporter.example", "sam@reporter.example")
OUTSIDER = "evil@outside.example"
NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "gwen", "hugo")
MARKER = re.compile(r"MK\d+")
TEMPLATES = Templates()


@dataclass
class Person:
    """A committee member as the model knows them: one identity."""

    key: int  # the model's own id for them
    handle: str
    email: str
    active: bool = True
    old_emails: list[str] = field(default_factory=list)


@dataclass
class CaseModel:
    reporter: str
    cleared: set[int] = field(default_factory=set)  # people who may read, once seated
    seated: set[int] = field(default_factory=set)
    recused: dict[int, str] = field(default_factory=dict)  # person -> hard | soft
    kept_out: set[int] = field(default_factory=set)  # by the reporter: the whole case
    messages: dict[str, set[int]] = field(default_factory=dict)  # marker -> kept from
    purged: set[str] = field(default_factory=set)  # markers of text purged
    # What the reporter sent: (raw bytes, recipients, how it came: "opening" |
    # "token" | "threaded", when, its marker).
    inbound: list[tuple[bytes, list[str], str, dt.datetime, str]] = field(default_factory=list)
    # Relayed text: marker -> (party, held for approval, by).
    relays: dict[str, tuple[str, bool, str]] = field(default_factory=dict)
    approved_after: dict[str, bool] = field(default_factory=dict)
    purge_done: bool = False


def _template_db() -> Path:
    """A migrated SQLite file, copied for each example (a migration takes a second)."""
    folder = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    template = folder / f"cocmail-model-{uuid.uuid4().hex[:8]}.db"
    store = Store(f"sqlite:///{template}")
    migrate.upgrade(store)
    keyed(store)  # the keyring's row is in every copy
    store.dispose()
    return template


class Committee(RuleBasedStateMachine):
    template: Path

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(dir=self.template.parent))
        database = self.folder / "cocmail.db"
        shutil.copy(self.template, database)
        self.db_url = f"sqlite:///{database}"
        self.store = keyed(Store(self.db_url))
        self.clock = FixedClock(START)
        self.people = [Person(i, name, f"{name}@members.example")
                       for i, name in enumerate(NAMES[:4])]
        self.mediator = Person(99, "mediator", MEDIATOR)
        self.cases: dict[int, CaseModel] = {}
        self.count = 0
        self.markers: dict[str, int] = {}  # marker -> case
        self.start()

    def teardown(self) -> None:
        self.store.dispose()
        shutil.rmtree(self.folder, ignore_errors=True)

    # --- the system under test ------------------------------------------------

    def start(self) -> None:
        """A start of cocmail on the roster as it is now."""
        active = [p for p in self.people if p.active]
        raw = {
            "committee": {"name": "Model", "short_name": "conduct", "address": CONDUCT,
                          "mediator": MEDIATOR,
                          "members": [{"handle": p.handle, "name": p.handle.title(),
                                       "email": p.email} for p in active]},
            "rotation": {"timezone": "UTC", "handoff": "monday 09:00", "handoff_mail": False},
            "sla": {"first_response": "3d"},
            "database": {"url": self.db_url},
            "delivery": {"method": "maildir", "maildir": str(self.folder / "outbox")},
            "digest": {"enabled": False},
        }
        self.config = config_module.from_dict(raw, self.folder / "config.toml")
        self.handles = members.start(self.store, self.config.committee, self.clock.now()).handles
        self.enqueue = Enqueue.for_config(self.config, KEY)
        self.intake = Intake(self.store, self.config.committee, KEY, self.clock, self.enqueue)

    def deliver(self, raw: bytes, rcpts: list[str], envelope: str) -> Any:
        recipients = []
        for address in rcpts:
            try:
                recipients.append(split_recipient(address, self.config.committee, self.handles))
            except UnknownKeepOut:
                return None  # refused after DATA, as SMTP does: nothing is stored
            except AddressError:
                continue  # refused at RCPT, as SMTP would
        if not recipients:
            return None
        self.clock.advance(dt.timedelta(seconds=30))
        return self.intake.accept(Inbound(raw, envelope, tuple(recipients), "smtp"))

    def marker(self, case: int) -> str:
        self.count += 1
        name = f"MK{self.count}"
        self.markers[name] = case
        return name

    def seat_address(self, case: int, role: str, email: str) -> str | None:
        with self.store.unit_of_work() as session:
            row = session.scalars(select(Participant).where(
                Participant.case_id == case, Participant.role == role,
                Participant.email_index == self.store.keyring.index_of(email)  # type: ignore[union-attr]
            )).first()
            if row is None:
                return None
            return reply_address(self.config.committee, case, make_token(KEY, case, row.id))

    def newest_relay(self, case: int) -> tuple[int, str, str] | None:
        """(id, recipient, status) of the case's newest relay, if any."""
        with self.store.unit_of_work() as session:
            row = session.execute(select(Outbox.id, Outbox.recipient, Outbox.status).where(
                Outbox.case_id == case, Outbox.kind == "relay")
                .order_by(Outbox.id.desc())).first()
            return None if row is None else (row.id, row.recipient, row.status)

    def purged(self, case: int) -> bool:
        with self.store.unit_of_work() as session:
            return session.scalars(select(Event.id).where(
                Event.case_id == case, Event.kind == "purged")).first() is not None

    def facts(self, case: int) -> tuple[Any, ...]:
        """What a command may change in a case."""
        with self.store.unit_of_work() as session:
            row = session.get(Case, case)
            assert row is not None
            recusals = sorted(tuple(r) for r in session.execute(select(
                Recusal.member_id, Recusal.kind).where(Recusal.case_id == case)))
            seats = sorted(tuple(r) for r in session.execute(select(
                Participant.id, Participant.cleared_at).where(Participant.case_id == case)))
            held = sorted(session.scalars(select(Outbox.status).where(
                Outbox.case_id == case, Outbox.kind == "relay")))
            purged = session.scalars(select(Event.id).where(
                Event.case_id == case, Event.kind.in_(("purged", "purge-requested")))).all()
            return (row.state, row.severity, row.closed_at, row.acknowledged_at, row.assignee,
                    tuple(recusals), tuple(seats), tuple(held), tuple(purged))

    def learn(self, case: int) -> None:
        """What the store recorded that the model takes as given: whom cocmail paged
        (the triagers read the case), the mediator's seat, seats given since."""
        model = self.cases[case]
        by_handle = {p.handle: p for p in [*self.people, self.mediator]}
        with self.store.unit_of_work() as session:
            now = members.current_handles(session.connection())
            for kind, data in session.execute(select(Event.kind, Event.data).where(
                    Event.case_id == case, Event.kind.in_(("paged", "mediator")))):
                if kind == "mediator":
                    model.seated.add(self.mediator.key)
                    model.cleared.add(self.mediator.key)
                for handle in data.get("members", []):
                    person = by_handle.get(now.get(handle, handle))
                    if person is not None:
                        model.cleared.add(person.key)
            handles = set(session.scalars(select(Participant.handle).where(
                Participant.case_id == case, Participant.role == "member",
                Participant.left_at.is_(None))))
        for person in [*self.people, self.mediator]:
            if person.handle in handles:
                model.seated.add(person.key)

    # --- who the model allows ---------------------------------------------------

    def person_of(self, email: str) -> Person | None:
        return next((p for p in [*self.people, self.mediator]
                     if p.email == email.lower() and p.active), None)

    def reads(self, case: int, person: Person) -> bool:
        model = self.cases[case]
        return (person.active and person.key in model.seated and person.key in model.cleared
                and model.recused.get(person.key) != "hard" and person.key not in model.kept_out)

    def acts(self, case: int, person: Person) -> bool:
        model = self.cases[case]
        return (person.active and person.key in model.seated
                and model.recused.get(person.key) != "hard" and person.key not in model.kept_out)

    # --- rules ---------------------------------------------------------------------

    @initialize()
    def first_report(self) -> None:
        self.report(REPORTERS[0], ())

    @rule(reporter=st.sampled_from(REPORTERS),
          without=st.lists(st.sampled_from(NAMES[:5]), max_size=2, unique=True))
    def report(self, reporter: str, without: tuple[str, ...] | list[str]) -> None:
        case = len(self.cases) + 1
        mark = self.marker(case)
        rcpts = [f"conduct+without-{h}@{DOMAIN}" for h in without] or [CONDUCT]
        raw = message(sender=reporter, body=f"Report {mark}\n")
        accepted = self.deliver(raw, rcpts, reporter)
        if accepted is None:
            return
        assert accepted.opened and accepted.case_id == case
        kept = {p.key for p in self.people if p.active and p.handle in without}
        self.cases[case] = CaseModel(reporter, kept_out=set(kept), messages={mark: set()},
                                     inbound=[(raw, rcpts, "opening", self.clock.now(), mark)])
        self.learn(case)

    @precondition(lambda self: self.cases)
    @rule(data=st.data(), threaded=st.booleans(),
          without=st.lists(st.sampled_from(NAMES[:5]), max_size=2, unique=True))
    def reporter_writes(self, data: st.DataObject, threaded: bool, without: list[str]) -> None:
        case = data.draw(st.sampled_from(sorted(self.cases)))
        model = self.cases[case]
        mark = self.marker(case)
        headers = {}
        if threaded:
            with self.store.unit_of_work() as session:
                ack = session.scalars(select(Outbox.message_id).where(
                    Outbox.case_id == case, Outbox.kind == "ack")).first()
            if ack is None:
                return
            headers["In-Reply-To"] = ack
            rcpts = [CONDUCT]
        else:
            own = self.seat_address(case, "reporter", model.reporter)
            assert own is not None
            rcpts = [own]
        rcpts += [f"conduct+without-{h}@{DOMAIN}" for h in without]
        valid = [h for h in without if any(p.handle == h and p.active for p in self.people)]
        raw = message(sender=model.reporter, subject="Re: my report", body=f"More {mark}\n",
                      headers=headers)
        if self.deliver(raw, rcpts, model.reporter) is None:
            return
        how = "threaded" if threaded else "token"
        model.inbound.append((raw, rcpts, how, self.clock.now(), mark))
        named = {p.key for p in self.people if p.handle in valid}
        if threaded:
            # Threaded by its headers it proves nothing of who sent it: a keep-out
            # of this message only.
            model.messages[mark] = named
        else:
            model.messages[mark] = set()
            model.kept_out |= named
        self.learn(case)

    @precondition(lambda self: self.cases)
    @rule(data=st.data(), without=st.sampled_from(NAMES[:5]))
    def someone_writes_as_the_reporter(self, data: st.DataObject, without: str) -> None:
        """Anyone can put the reporter's address in From and answer a mail of the
        case: threaded by its headers, such a mail keeps members from itself only,
        never out of the case."""
        case = data.draw(st.sampled_from(sorted(self.cases)))
        model = self.cases[case]
        with self.store.unit_of_work() as session:
            known = session.scalars(select(Outbox.message_id).where(
                Outbox.case_id == case)).first()
        if known is None:
            return
        mark = self.marker(case)
        before = self.facts(case)
        raw = message(sender=model.reporter, subject="Re: the case", body=f"Forged {mark}\n",
                      headers={"In-Reply-To": known})
        if self.deliver(raw, [f"conduct+without-{without}@{DOMAIN}"], OUTSIDER) is None:
            return
        assert self.facts(case) == before, "a threaded mail kept someone out of the case"
        model.messages[mark] = {p.key for p in self.people if p.handle == without and p.active}
        self.learn(case)

    @precondition(lambda self: any(c.inbound for c in self.cases.values()))
    @rule(data=st.data(), extra=st.sampled_from(NAMES[:5]))
    def same_bytes_again(self, data: st.DataObject, extra: str) -> None:
        case = data.draw(st.sampled_from(sorted(c for c, m in self.cases.items() if m.inbound)))
        model = self.cases[case]
        raw, rcpts, how, when, mark = data.draw(st.sampled_from(model.inbound))
        again = [*rcpts, f"conduct+without-{extra}@{DOMAIN}"]
        accepted = self.deliver(raw, again, model.reporter)
        if accepted is None:
            return
        assert accepted.duplicate
        named = {p.key for p in self.people if p.handle == extra and p.active}
        if how in ("opening", "token") and self.clock.now() - when <= dt.timedelta(days=5):
            model.kept_out |= named  # as if it had come with the first delivery
        else:
            model.messages[mark] = model.messages.get(mark, set()) | named
        self.learn(case)

    COMMANDS = ("no-conflict", "no-conflict", "recuse", "recuse soft", "note", "ack", "close",
                "reopen", "party", "relay", "relay", "approve", "approve", "purge",
                "severity high")

    @precondition(lambda self: self.cases)
    @rule(data=st.data(), command=st.sampled_from(COMMANDS), forged=st.sampled_from(
        (None, None, None, "outsider", "old address")))
    def member_writes(self, data: st.DataObject, command: str, forged: str | None) -> None:
        case = data.draw(st.sampled_from(sorted(self.cases)))
        model = self.cases[case]
        everyone = [*self.people, self.mediator]
        seated = [p for p in everyone if p.key in model.seated] or everyone
        person = data.draw(st.sampled_from(seated) | st.sampled_from(everyone))
        self.writes(case, person, command, forged)

    @precondition(lambda self: self.cases)
    @rule(data=st.data())
    def outreach(self, data: st.DataObject) -> None:
        """A member who reads the case relays to the reporter's address, named under
        another role; another approves (or tries to)."""
        case = data.draw(st.sampled_from(sorted(self.cases)))
        readers = [p for p in self.people if self.reads(case, p)]
        if len(readers) < 2:
            return
        first, second = data.draw(st.permutations(readers))[:2]
        self.writes(case, first, "relay", None)
        self.writes(case, data.draw(st.sampled_from([first, second])), "approve", None)

    @precondition(lambda self: self.cases)
    @rule(data=st.data())
    def member_keeps_one_out(self, data: st.DataObject) -> None:
        """A member's note to their reply address and to without-<handle> of one
        still to answer the conflict check, who then answers it: they never get
        that note, now or in the case so far they get."""
        case = data.draw(st.sampled_from(sorted(self.cases)))
        model = self.cases[case]
        readers = [p for p in self.people if self.reads(case, p)]
        waiting = [p for p in self.people if self.acts(case, p) and p.key not in model.cleared]
        if not readers or not waiting:
            return
        other = data.draw(st.sampled_from(waiting))
        self.writes(case, data.draw(st.sampled_from(readers)), "note", None,
                    without=other.handle)
        self.writes(case, other, "no-conflict", None)

    @precondition(lambda self: self.cases)
    @rule(data=st.data())
    def purge_case(self, data: st.DataObject) -> None:
        """Two members purge a case (the second with a relay in the same reply)."""
        case = data.draw(st.sampled_from(sorted(self.cases)))
        readers = [p for p in self.people if self.reads(case, p)]
        if len(readers) < 2:
            return
        first, second = data.draw(st.permutations(readers))[:2]
        self.writes(case, first, "purge", None)
        self.writes(case, second, "purge", None)

    def writes(self, case: int, person: Person, command: str, forged: str | None,
               without: str | None = None) -> None:
        """``person`` sends ``command`` to their reply address of ``case`` (from
        someone else when ``forged``; to ``without``'s keep-out address too)."""
        model = self.cases[case]
        with self.store.unit_of_work() as session:
            seat = session.scalars(select(Participant).where(
                Participant.case_id == case, Participant.role == "member",
                Participant.handle == person.handle)).first()
            if seat is None:
                return
            to = reply_address(self.config.committee, case, make_token(KEY, case, seat.id))
        sender = person.email
        if forged == "outsider":
            sender = OUTSIDER
        elif forged == "old address":
            if not person.old_emails:
                return
            sender = person.old_emails[-1]
        mark = self.marker(case)
        body = {"party": f"party add observer {model.reporter}\n",
                # The reporter's address named under another role, and a relay to it.
                "relay": f"party add observer {model.reporter}\nrelay observer\n\n"
                         f"Could you call us? {mark}\n",
                # A purge, with a relay in the same reply: nothing of it may go out.
                "purge": f"purge\nparty add witness wit@outside.example\nrelay witness\n\n"
                         f"Please tell us {mark}\n",
                "note": f"A note {mark}\n"}.get(command, f"{command}\n\nAnd {mark}\n")
        before = self.facts(case)
        relays_before = (self.newest_relay(case) or (0,))[0]
        entitled = forged is None and self.acts(case, person)
        pending = entitled and person.key not in model.cleared
        rcpts = [to] + ([f"conduct+without-{without}@{DOMAIN}"] if without else [])
        self.deliver(message(sender=sender, subject="Re: the case", body=body), rcpts, sender)
        after = self.facts(case)
        if not entitled:
            assert after == before, f"{forged or 'a member who may not act'} changed the case"
            return
        model.messages[mark] = {p.key for p in self.people if p.handle == without and p.active}
        name = command.split()[0]
        if pending and name not in ("no-conflict", "recuse"):
            assert after == before, "a member who has not answered the check acted"
            return
        if command == "no-conflict":
            model.cleared.add(person.key)
        elif command == "recuse":
            model.recused[person.key] = "hard"
        elif command == "recuse soft":
            if model.recused.get(person.key) != "hard":
                model.recused[person.key] = "soft"
                model.cleared.add(person.key)
        elif command == "approve":
            for relay, (_, _, by) in model.relays.items():
                if by != person.handle:
                    model.approved_after[relay] = True
        if "relay" in body:
            newest = self.newest_relay(case)
            if newest is not None and newest[0] != relays_before:
                model.relays[mark] = (newest[1], newest[2] == "held", person.handle)
        if self.purged(case) and not model.purge_done:
            # The system says the case is purged now: nothing said so far may go out.
            model.purge_done = True
            model.purged |= set(model.messages)
        self.learn(case)

    @rule(change=st.sampled_from(("add", "remove", "rename", "email")), data=st.data())
    def roster_changes(self, change: str, data: st.DataObject) -> None:
        active = [p for p in self.people if p.active]
        if change == "add":
            unused = [n for n in NAMES if all(p.handle != n for p in self.people)
                      and not self._handle_was_used(n)]
            if not unused:
                return
            name = unused[0]
            self.people.append(Person(len(self.people), name, f"{name}@members.example"))
        else:
            if len(active) <= 3:
                return
            person = data.draw(st.sampled_from(active))
            if change == "remove":
                person.active = False
            elif change == "rename":
                fresh = f"{person.handle}x"
                if self._handle_was_used(fresh) or len(fresh) > 30:
                    return
                person.handle = fresh
            else:
                person.old_emails.append(person.email)
                person.email = f"{person.handle}.{len(person.old_emails)}@new.example"
        self.start()
        for case in self.cases:
            self.learn(case)

    def _handle_was_used(self, handle: str) -> bool:
        with self.store.unit_of_work() as session:
            return handle in members.handles(session.connection())

    @rule(minutes=st.integers(min_value=1, max_value=600))
    def time_passes(self, minutes: int) -> None:
        self.clock.advance(dt.timedelta(minutes=minutes))
        now = self.clock.now()
        with self.store.unit_of_work() as session:
            escalate(session.connection(), self.config, self.enqueue, now)
        with self.store.unit_of_work() as session:
            seat_late_members(session.connection(), self.config.committee, self.enqueue, now)
        for case in self.cases:
            self.learn(case)

    @rule()
    def restart(self) -> None:
        self.start()

    # --- what goes out ----------------------------------------------------------------

    @invariant()
    def what_goes_out_is_allowed(self) -> None:
        """Everything due now, rendered as the worker would; each mail checked."""
        with self.store.unit_of_work() as session:
            lookups = context.Lookups(session)
            rows = list(session.scalars(select(Outbox).where(
                Outbox.status == "queued", Outbox.due_at <= self.clock.now())
                .order_by(Outbox.id)))
            for row in rows:
                values = context.build(session, row, self.config, KEY, lookups)
                if isinstance(values, context.Cancelled):
                    row.status = "cancelled"
                    continue
                rendered = TEMPLATES.render(row.kind, values)
                self.check(row, rendered.subject + "\n" + rendered.text)
                row.status = "sent"

    def check(self, row: Outbox, text: str) -> None:
        kind = KINDS[row.kind]
        case = row.case_id
        found = set(MARKER.findall(text))
        person = self.person_of(row.recipient)
        where = f"{row.kind} to {row.recipient} (case {case})"
        if case is not None:
            model = self.cases[case]
            leaked = found & model.purged
            assert not leaked, f"{where} carries purged text {leaked}"
        if kind.audience.value == "reader":
            assert person is not None, f"{where}: not a member now"
            assert case is not None and self.reads(case, person), f"{where}: may not read"
            for mark in found:
                assert self.markers[mark] == case, f"{where}: text of another case"
                assert person.key not in self.cases[case].messages.get(mark, set())
        elif kind.audience.value == "pending":
            assert not found, f"{where}: a conflict check with content {found}"
            assert case is not None
            assert self.cases[case].reporter not in text.lower(), f"{where}: names the reporter"
            assert person is not None and person.key not in self.cases[case].kept_out
            assert self.cases[case].recused.get(person.key) is None, f"{where}: recused"
        elif kind.audience.value == "sender":
            assert person is not None, f"{where}: a confirmation to someone not a member"
        elif kind.audience.value == "party":
            assert case is not None
            for mark in found:
                party, held, _ = self.cases[case].relays.get(mark, ("", False, ""))
                assert party == row.recipient, f"{where}: relayed text {mark}"
                if row.recipient in REPORTERS:
                    assert held and self.cases[case].approved_after.get(mark), \
                        f"{where}: a relay to whoever reported went without approval"
        elif kind.audience.value == "reporter":
            assert case is not None and row.recipient == self.cases[case].reporter


@pytest.fixture(scope="module")
def template() -> Any:
    path = _template_db()
    yield path
    path.unlink(missing_ok=True)


def test_no_mail_and_no_command_gets_past_the_rule(template: Path) -> None:
    """Random days of a committee's life: nothing reaches anyone the model does
    not allow, and nobody but an entitled member changes a case."""
    Committee.template = template
    run_state_machine_as_test(Committee, settings=settings(
        # A longer hunt: COCMAIL_MODEL_EXAMPLES=1000 (the suite's is a few seconds).
        max_examples=int(os.environ.get("COCMAIL_MODEL_EXAMPLES", "60")),
        stateful_step_count=30, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
