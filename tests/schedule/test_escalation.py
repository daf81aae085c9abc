"""The escalation ladder and the hand-offs, swept from the store with a clock the
test moves: each step once, at its time; `ack` stops the rest; critical pages
everyone; a hand-off mails the outgoing and incoming pair once."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest
from sqlalchemy import select, update

from cocmail.schedule.escalation import escalate
from cocmail.store.db import Store
from cocmail.store.models import Case, Event, Outbox, RotationOverride
from tests.committee import EMAIL, HOUR, OPENED, Committee, recuse
from tests.conftest import CONDUCT, MEMBERS, keyed


@pytest.fixture
def committee(store: Store, tmp_path: Path, db_url: str) -> Committee:
    return Committee(store, tmp_path, db_url,
                     rotation={"handoff_mail": True})


def test_each_step_fires_once_at_its_time(committee: Committee) -> None:
    case = committee.report()
    committee.no_conflict(case)
    pair = committee.on_duty(OPENED)
    everyone = [m[0] for m in MEMBERS]
    assert committee.sweep(OPENED + 4 * HOUR - dt.timedelta(seconds=1)) == 0
    assert committee.sweep(OPENED + 4 * HOUR) == 2
    assert committee.sweep(OPENED + 4 * HOUR) == 0  # taken: not again
    assert committee.sweep(OPENED + 23 * HOUR) == 0
    assert committee.sweep(OPENED + 24 * HOUR) == len(everyone)
    assert committee.sweep(OPENED + 48 * HOUR) == 1
    assert committee.sweep(OPENED + 72 * HOUR) == 0  # the deadline: recorded, no mail
    assert committee.sweep(OPENED + 400 * HOUR) == 0
    assert sorted(committee.mails("escalation")) == sorted(
        [("on-duty@14400", h) for h in pair]
        + [("committee@86400", h) for h in everyone]
        + [("chair@172800", "alice")])
    steps = [(kind, data.get("step"), sorted(data.get("members", [])))
             for kind, data in committee.events(case)
             if kind not in ("opened", "message", "no-conflict")]
    assert steps == [
        ("paged", None, sorted(pair)),
        ("escalated", "on-duty", sorted(pair)),
        ("escalated", "committee", everyone),
        ("escalated", "chair", ["alice"]),
        ("sla-missed", "sla", []),
    ]
    _, text = committee.rendered(Outbox.kind == "escalation")[0]
    assert text.subject == "Not acknowledged after 4 hours"
    assert '"ack"' in text.text and "on triage duty" in text.text


def test_ack_stops_the_rest_and_tells_everyone_paged(committee: Committee) -> None:
    case = committee.report()
    committee.no_conflict(case)
    pair = committee.on_duty(OPENED)
    committee.sweep(OPENED + 24 * HOUR)  # on-duty and committee steps both due: both taken
    assert [s for s, _ in committee.mails("escalation")].count("committee@86400") == len(MEMBERS)
    acker = next(h for h in EMAIL if h not in pair)
    committee.clock._now = OPENED + 25 * HOUR
    committee.reply(case, acker, "ack\n")
    # Everyone was paged by the committee step: all but the acker hear of it.
    assert sorted(h for _, h in committee.mails("status")) == sorted(
        h for h in EMAIL if h != acker)
    assert committee.sweep(OPENED + 100 * HOUR) == 0
    assert "sla-missed" not in [kind for kind, _ in committee.events(case)]


def test_the_status_goes_to_those_paged_only(committee: Committee) -> None:
    case = committee.report()
    first, second = committee.on_duty(OPENED)
    committee.reply(case, first, "ack\n")
    assert committee.mails("status") == [("acknowledged", second)]


def test_a_late_sweep_takes_every_step_due_once(committee: Committee) -> None:
    committee.report()
    # The daemon was down for 50 hours: three steps are due, each is taken once.
    assert committee.sweep(OPENED + 50 * HOUR) == 2 + len(MEMBERS) + 1
    assert committee.sweep(OPENED + 50 * HOUR) == 0


def test_a_step_reaches_the_committee_when_the_chair_recused(committee: Committee) -> None:
    case = committee.report()
    committee.no_conflict(case)
    with committee.store.unit_of_work() as session:
        recuse(session, case, "alice", "hard")
    committee.sweep(OPENED + 47 * HOUR)
    before = len(committee.mails("escalation"))
    committee.sweep(OPENED + 48 * HOUR)
    chair_step = committee.mails("escalation")[before:]
    assert sorted(h for _, h in chair_step) == ["bob", "carol", "dave"]
    assert committee.events(case)[-1][1]["instead_of_chair"] is True


def test_critical_pages_everyone_once(committee: Committee) -> None:
    case = committee.report()
    committee.no_conflict(case)
    committee.reply(case, "bob", "severity critical\n")
    assert sorted(committee.mails("escalation")) == [
        ("critical", h) for h in ("alice", "carol", "dave")]
    committee.reply(case, "bob", "severity high\n")
    committee.reply(case, "carol", "severity critical\n")
    assert len(committee.mails("escalation")) == 3  # asked for once per case
    _, text = committee.rendered(Outbox.kind == "escalation")[0]
    assert text.subject == "URGENT: meeting requested (severity critical)"
    assert "Bob B has marked case conduct #1 as critical" in " ".join(text.text.split())


def test_two_sweeps_at_once_take_each_step_once(committee: Committee, db_url: str) -> None:
    for _ in range(20):
        committee.report()
    stores = [keyed(Store(db_url)), keyed(Store(db_url))]
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def sweep(store: Store) -> None:
        try:
            start.wait()
            for minutes in range(0, 60 * 50, 90):
                with store.unit_of_work() as session:
                    escalate(session.connection(), committee.config, committee.enqueue,
                             OPENED + dt.timedelta(minutes=minutes))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=sweep, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.dispose()
    assert not errors, errors
    # The members not on duty have not answered the conflict check: the committee
    # and chair steps reach them as an urgent conflict check.
    mails = committee.mails("escalation") + [
        (step, h) for step, h in committee.mails("conflict") if step.startswith("escalation:")]
    assert len(mails) == 20 * (2 + len(MEMBERS) + 1)
    with committee.store.unit_of_work() as session:
        escalated = session.scalars(select(Event.case_id).where(Event.kind == "escalated")).all()
    assert sorted(escalated) == sorted(list(range(1, 21)) * 3)


def test_members_still_to_answer_the_conflict_check_get_it_again_urgent(
        committee: Committee) -> None:
    case = committee.report()
    pair = committee.on_duty(OPENED)
    others = [h for h in EMAIL if h not in pair]
    assert committee.sweep(OPENED + 24 * HOUR) == 2 + len(MEMBERS)
    assert sorted(committee.mails("escalation")) == sorted(
        [("on-duty@14400", h) for h in pair] + [("committee@86400", h) for h in pair])
    urgent = [(step, h) for step, h in committee.mails("conflict") if step != "opened"]
    assert sorted(urgent) == sorted(("escalation:committee@86400", h) for h in others)
    for values, text in committee.rendered(Outbox.kind == "conflict",
                                           Outbox.step == "escalation:committee@86400"):
        assert text.subject == "Conflict check, urgent: not acknowledged after 1 day"
        assert values.message is None and "Someone was rude" not in text.text
    # Once one of them answers "no-conflict", they get the case and can ack it.
    committee.reply(case, others[0], "no-conflict\nack\n")
    assert [k for k, _ in committee.events(case)][-2:] == ["no-conflict", "acknowledged"]


def test_closed_and_acknowledged_cases_are_not_swept(committee: Committee) -> None:
    acked, closed, waiting = committee.report(), committee.report(), committee.report()
    with committee.store.unit_of_work() as session:
        session.execute(update(Case).where(Case.id == acked).values(acknowledged_at=OPENED))
        session.execute(update(Case).where(Case.id == closed).values(closed_at=OPENED,
                                                                     state="closed"))
    committee.sweep(OPENED + 5 * HOUR)
    with committee.store.unit_of_work() as session:
        assert set(session.scalars(select(Outbox.case_id).where(
            Outbox.kind == "escalation"))) == {waiting}


class TestHandoff:
    MONDAY = dt.datetime(2026, 11, 30, 9, tzinfo=dt.UTC)

    def test_the_pairs_get_one_mail_with_the_cases_waiting(self, committee: Committee) -> None:
        waiting, acked = committee.report(), committee.report()
        with committee.store.unit_of_work() as session:
            session.execute(update(Case).where(Case.id == acked).values(acknowledged_at=OPENED))
        before = committee.on_duty(self.MONDAY - dt.timedelta(seconds=1))
        after = committee.on_duty(self.MONDAY)
        assert committee.handoffs(self.MONDAY - dt.timedelta(seconds=1)) == 0
        assert committee.handoffs(self.MONDAY + dt.timedelta(seconds=30)) == 3
        assert committee.handoffs(self.MONDAY + dt.timedelta(hours=20)) == 0
        assert sorted(h for _, h in committee.mails("handoff")) == sorted(set(before + after))
        assert [k for k, _ in committee.events(waiting)][-1] == "handed-off"
        assert "handed-off" not in [k for k, _ in committee.events(acked)]
        incoming = next(h for h in after if h not in before)
        [(_, text)] = committee.rendered(Outbox.kind == "handoff",
                                         committee.to(EMAIL[incoming]))
        assert text.subject == "Triage hand-off: 1 case waiting"
        flat = " ".join(text.text.split())
        assert f"conduct #{waiting}: new" in flat and f"#{acked}:" not in flat
        assert "opened 4 days ago, overdue by 1 day" in flat  # Wednesday + 3 days < Monday
        assert "New reports page you" in flat

    def test_a_member_kept_out_of_a_case_does_not_see_it_listed(
            self, committee: Committee) -> None:
        after = committee.on_duty(self.MONDAY)
        committee.report(to=f"conduct+without-{after[0]}@{CONDUCT.split('@')[1]}")
        committee.handoffs(self.MONDAY)
        [(values, _)] = committee.rendered(Outbox.kind == "handoff", committee.to(EMAIL[after[0]]))
        assert values.cases == []

    def test_an_override_is_a_handoff_too(self, committee: Committee) -> None:
        now = OPENED
        first, second = committee.on_duty(now)
        stand_in = next(h for h in EMAIL if h not in (first, second))
        with committee.store.unit_of_work() as session:
            session.add(RotationOverride(member=stand_in, instead_of=first,
                                         starts_at=now - HOUR, ends_at=now + HOUR,
                                         created_at=now))
        assert committee.handoffs(now) == 3
        assert sorted(h for _, h in committee.mails("handoff")) == sorted(
            [first, second, stand_in])
        assert committee.handoffs(now + 2 * HOUR) == 3  # and back at its end
