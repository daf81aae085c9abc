"""The process commands that work a case after triage: the plan, close, reopen;
in process, through the intake, as a member's reply by mail would."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from cocmail.intake.inbound import Inbound
from cocmail.route.addresses import split_recipient
from cocmail.schedule.reminders import queue_reminders
from cocmail.store.db import Store
from cocmail.store.models import Case, Outbox
from tests.committee import EMAIL, HOUR, OPENED, Committee, recuse
from tests.conftest import CONDUCT, MEMBERS
from tests.mail import message


@pytest.fixture
def committee(store: Store, tmp_path: Path, db_url: str) -> Committee:
    return Committee(store, tmp_path, db_url)


def _transcript(committee: Committee) -> list[tuple[str, bool, str]]:
    """The last confirmation's lines: (command, applied, text)."""
    with committee.store.unit_of_work() as session:
        row = session.scalars(select(Outbox).where(Outbox.kind == "confirmation")
                              .order_by(Outbox.id.desc())).first()
        assert row is not None
        return [(e["line"], e["applied"], e["text"]) for e in row.data["transcript"]]


def test_the_plan_records_each_item_and_says_what_is_open(committee: Committee) -> None:
    case = committee.report()
    committee.no_conflict(case)
    committee.reply(case, "bob", "plan safety-review\nplan public-record n/a\n")
    lines = _transcript(committee)
    assert [applied for _, applied, _ in lines] == [True, True]
    assert lines[1][2] == ("public-record: n/a. Still open: clarify-reporter, "
                           "clarify-witnesses.")
    committee.reply(case, "carol", "plan public-record n/a\nplan safety-review open\n"
                                   "plan budget done\nplan clarify-reporter maybe\n")
    lines = _transcript(committee)
    assert lines[0] == ("plan public-record n/a", True, "public-record was already n/a.")
    assert lines[1][1] and "Still open: clarify-reporter, clarify-witnesses, safety-review" \
        in lines[1][2]
    assert not lines[2][1] and "Say which item" in lines[2][2]
    assert not lines[3][1] and "done, n/a or open" in lines[3][2]
    plans = [data for kind, data in committee.events(case) if kind == "plan"]
    assert [(d["item"], d["state"]) for d in plans] == [
        ("safety-review", "done"), ("public-record", "n/a"), ("safety-review", "open")]


def test_close_and_reopen_tell_the_others_and_stop_the_escalation(
        committee: Committee) -> None:
    case = committee.report()
    committee.no_conflict(case)
    committee.reply(case, "alice", "close not a code of conduct matter\n")
    assert _transcript(committee)[0][1] is True
    statuses = committee.mails("status")
    assert sorted(h for _, h in statuses) == sorted(m[0] for m in MEMBERS if m[0] != "alice")
    with committee.store.unit_of_work() as session:
        row = session.scalars(select(Outbox).where(Outbox.kind == "status")).first()
        assert row is not None
        assert row.data["status_text"] == ("Closed by Alice A: not a code of conduct matter")
        closed = session.get(Case, case)
        assert closed is not None and closed.state == "closed" and closed.closed_at
    assert committee.sweep(OPENED + 100 * HOUR) == 0  # a closed case does not escalate
    committee.reply(case, "bob", "close\n")
    assert "was already closed" in _transcript(committee)[0][2]
    committee.reply(case, "bob", "reopen\n")
    assert _transcript(committee)[0][2] == f"Case #{case} is open again (new). The others are told."
    with committee.store.unit_of_work() as session:
        reopened = session.get(Case, case)
        assert reopened is not None and reopened.state == "new" and reopened.closed_at is None
    assert [k for k, _ in committee.events(case) if k in ("closed", "reopened")] == [
        "closed", "reopened"]


def test_a_follow_up_comes_back_once_when_due(committee: Committee) -> None:
    case = committee.report()
    committee.no_conflict(case)
    committee.clock.advance(HOUR)
    committee.reply(case, "dave", "follow-up 2026-12-01 check in with the reporter\n"
                                  "follow-up 3d the ban ends\n"
                                  "follow-up 2020-01-01 too late\nfollow-up soon\n")
    lines = _transcript(committee)
    assert [applied for _, applied, _ in lines] == [True, True, False, False]
    assert lines[0][2].endswith("reminded on 2026-12-01 09:00 UTC: check in with the reporter")
    assert "is in the past" in lines[2][2] and "Say when and what" in lines[3][2]
    committee.reply(case, "alice", "close\n")  # reminders come for closed cases too
    due = OPENED + HOUR + 3 * 24 * HOUR
    with committee.store.unit_of_work() as session:
        assert queue_reminders(session.connection(), committee.enqueue, due - HOUR) == 0
    with committee.store.unit_of_work() as session:
        assert queue_reminders(session.connection(), committee.enqueue, due) == len(MEMBERS)
    with committee.store.unit_of_work() as session:
        assert queue_reminders(session.connection(), committee.enqueue, due) == 0
    december = datetime.datetime(2026, 12, 1, 9, tzinfo=datetime.UTC)
    with committee.store.unit_of_work() as session:
        assert queue_reminders(session.connection(), committee.enqueue,
                               december) == len(MEMBERS)
    reminders = committee.mails("reminder")
    assert len(reminders) == 2 * len(MEMBERS)
    _, text = committee.rendered(Outbox.kind == "reminder")[0]
    assert text.subject == "Follow-up due: the ban ends"
    assert "Dave D asked to be reminded" in " ".join(text.text.split())
    assert [k for k, _ in committee.events(case)].count("follow-up-due") == 2


def test_parties_reconvene_votes_and_a_decision(committee: Committee) -> None:
    case = committee.report()
    committee.no_conflict(case)
    committee.reply(case, "alice", "party add respondent sam@elsewhere.example Sam S\n"
                                   "party add witness not-an-address\n"
                                   "party add witness bob@members.example\n"
                                   "vote coaching\n")
    lines = _transcript(committee)
    assert lines[0][1] and "Sam S is now a respondent" in lines[0][2]
    assert not lines[1][1] and "not an email address" in lines[1][2]
    assert not lines[2][1] and "is a committee member" in lines[2][2]
    assert not lines[3][1] and "reconvene" in lines[3][2]  # not deciding yet
    with committee.store.unit_of_work() as session:
        recuse(session, case, "dave", "soft")
    committee.reply(case, "alice", "plan safety-review\nreconvene\n")
    assert "alice, bob, carol are asked for their vote" in _transcript(committee)[1][2]
    asked = _status(committee, "reconvened")
    assert sorted(asked) == ["bob", "carol"]  # not dave: a soft conflict does not vote
    text = asked["bob"]
    assert "safety-review: done" in text and "respondent: Sam S <sam@elsewhere.example>" in text
    assert "Your vote is needed" in text

    committee.reply(case, "dave", "vote no-action\n")
    assert "may not vote" in _transcript(committee)[0][2]
    committee.reply(case, "alice", "vote coaching two sessions\n")
    committee.reply(case, "bob", "vote coaching\n")
    committee.reply(case, "carol", "vote private-warning\ndecide coaching\n")
    lines = _transcript(committee)
    assert lines[0][1] and "Tally: coaching 2, private-warning 1" in lines[0][2]
    assert not lines[1][1] and "needs consensus: coaching 2, private-warning 1" in lines[1][2]
    committee.reply(case, "carol", "vote coaching\nfollow-up 30d check in\ndecide coaching\n")
    assert _transcript(committee)[2] == ("decide coaching", True,
                                         "Decided: coaching. The members are told.")
    decided = _status(committee, "decided")
    assert sorted(decided) == ["alice", "bob", "dave"]
    assert "Decision: coaching" in decided["alice"] and "Votes: coaching 3" in decided["alice"]
    assert "Details: two sessions" in decided["alice"]
    assert "Follow-up " in decided["alice"] and "check in" in decided["alice"]
    with committee.store.unit_of_work() as session:
        row = session.get(Case, case)
        assert row is not None and row.state == "decided" and row.decision == "coaching"


def test_decide_override_records_the_tally(committee: Committee) -> None:
    case = committee.report()
    committee.no_conflict(case)
    committee.reply(case, "alice", "reconvene\nvote platform-ban 3 months\n")
    committee.reply(case, "bob", "vote coaching\n")
    committee.reply(case, "alice", "decide platform-ban override\n")
    assert _transcript(committee)[0][2].startswith(
        "Decided: platform-ban (override; tally: platform-ban 1, coaching 1; not voted: ")
    [event] = [d for k, d in committee.events(case) if k == "decided"]
    assert event["consensus"] is False and event["action"] == "platform-ban"


def _status(committee: Committee, step: str) -> dict[str, str]:
    """The text of each status mail of ``step``, by member handle."""
    return {values.recipient.handle: mail.text for values, mail in committee.rendered(
        Outbox.kind == "status", Outbox.step.startswith(f"{step}:"))}


def test_a_triager_who_recuses_is_replaced_and_hears_nothing_more(
        committee: Committee) -> None:
    case = committee.report()
    committee.no_conflict(case)
    first, second = committee.on_duty(OPENED)
    committee.reply(case, first, "recuse I know the respondent\n")
    assert "nothing more about it" in _transcript(committee)[0][2]
    pages = committee.mails("page")
    assert len(pages) == 3 and pages[-1][1] not in (first, second)
    stand_in = pages[-1][1]
    events = [(k, d) for k, d in committee.events(case) if k in ("recused", "paged")]
    assert events[-2][0] == "recused" and events[-2][1]["reason"] == "I know the respondent"
    assert events[-1] == ("paged", {"members": [stand_in], "instead_of": first})
    # From now on the recused member gets no mail of the case; the others do.
    before = {h for _, h in committee.mails("message")}
    committee.reply(case, second, "I called the reporter.\n")
    after = [h for _, h in committee.mails("message")]
    assert first not in after and stand_in in after and before == set()
    # Their later replies are kept with the case, and nothing in them is acted on.
    committee.reply(case, first, "reopen\nplan safety-review\n")
    assert "nothing in it was carried out" in _transcript(committee)[0][2]


def test_a_soft_recusal_still_reads(committee: Committee) -> None:
    case = committee.report()
    committee.no_conflict(case)
    first, second = committee.on_duty(OPENED)
    other = next(h for h in ("alice", "bob", "carol", "dave") if h not in (first, second))
    committee.reply(case, other, "recuse soft\n")
    assert "you still get its mail" in _transcript(committee)[0][2]
    assert len(committee.mails("page")) == 2  # not a triager: nobody is replaced
    committee.reply(case, first, "a note\n")
    assert other in [h for _, h in committee.mails("message")]


def test_a_replayed_reply_runs_nothing_twice(committee: Committee) -> None:
    case = committee.report()
    committee.no_conflict(case)
    committee.reply(case, "bob", "plan safety-review\nclose\n", message_id="once@members.example")
    statuses = len(committee.mails("status"))
    # The same reply again, with other bytes (resent, forwarded back): refused.
    committee.reply(case, "bob", "plan safety-review\nclose\nreopen\n",
                    message_id="once@members.example")
    [(_, applied, text)] = _transcript(committee)
    assert not applied and "was carried out at" in text and "<once@members.example>" in text
    assert len(committee.mails("status")) == statuses
    assert [k for k, _ in committee.events(case)].count("closed") == 1
    assert "reopened" not in [k for k, _ in committee.events(case)]


def test_purge_needs_two_members_then_no_body_text_is_left(committee: Committee) -> None:
    case = committee.report()
    committee.no_conflict(case)
    committee.reply(case, "bob", "I spoke to SECRET-NOTE-MARKER today.\n")
    committee.reply(case, "bob", "purge\n")
    assert "when a second member replies" in _transcript(committee)[0][2]
    committee.reply(case, "bob", "purge\n")  # the same words again: a copy, nothing runs
    assert "word for word" in _transcript(committee)[0][2]
    committee.reply(case, "bob", "purge\n\nPlease, it is urgent.\n")
    assert "a second member must" in _transcript(committee)[0][2]
    assert _body_text_left(committee.store, "Someone was rude to me")
    committee.reply(case, "carol", "purge\nmore SECRET-NOTE-MARKER text\n")
    assert "is purged" in _transcript(committee)[0][2]
    assert not _body_text_left(committee.store, "Someone was rude to me")
    assert not _body_text_left(committee.store, "SECRET-NOTE-MARKER")
    kinds = [k for k, _ in committee.events(case)]
    assert kinds.count("purge-requested") == 1 and kinds.count("purged") == 1
    assert "opened" in kinds  # the history stays


def _body_text_left(store: Store, marker: str) -> list[str]:
    """Every column of every table that still holds ``marker``."""
    from cocmail.store.models import Base

    found = []
    with store.unit_of_work() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(table.select()).mappings():
                for column, value in row.items():
                    text = value.decode("utf-8", "replace") if isinstance(value, bytes) \
                        else str(value)
                    if marker in text:
                        found.append(f"{table.name}.{column}")
    return found


def test_a_member_files_a_report_received_elsewhere(committee: Committee) -> None:
    committee.intake.accept(Inbound(
        message(sender=EMAIL["carol"], body="on-behalf-of rita@chat.example\nchannel chat\n\n"
                                            "Rita told me in a DM that ...\n"),
        EMAIL["carol"], (split_recipient(CONDUCT, committee.config.committee),), "smtp"))
    with committee.store.unit_of_work() as session:
        case = session.get(Case, 1)
        assert case is not None and case.channel == "chat"
        seats = sorted((p.role, p.email) for p in case.participants if p.role != "member")
    [(values, text)] = committee.rendered(Outbox.kind == "ack")
    assert seats == [("reported-by", "rita@chat.example"), ("reporter", EMAIL["carol"])]
    # To carol, not rita: cocmail writes to nobody outside the committee.
    assert values.recipient.email == EMAIL["carol"]
    assert text.subject == "Filed: the report you received by chat"
    opened = committee.events(1)[0][1]
    assert opened["on_behalf_of"] == "rita@chat.example" and opened["filed_by"] == "carol"
    # Anyone else's mail with such lines is an ordinary report.
    committee.intake.accept(Inbound(
        message(body="on-behalf-of x@y.example\nchannel chat\n"), "rita@reporter.example",
        (split_recipient(CONDUCT, committee.config.committee),), "smtp"))
    with committee.store.unit_of_work() as session:
        second = session.get(Case, 2)
        assert second is not None and second.channel == "email"


def test_a_dkim_failure_recorded_by_our_server_stops_commands(
        store: Store, tmp_path: Path, db_url: str) -> None:
    committee = Committee(store, tmp_path, db_url,
                          committee={"authserv_ids": ["mx.conduct.example.org"]})
    case = committee.report()
    committee.no_conflict(case)
    failed = {"Authentication-Results": "mx.conduct.example.org; dkim=fail (body hash) "
                                        "header.d=members.example; spf=pass "
                                        "smtp.mailfrom=bob@members.example"}
    committee.reply(case, "bob", "close\n", headers=failed)
    [(_, applied, text)] = _transcript(committee)
    assert not applied and "dkim=fail for members.example" in text
    assert "closed" not in [k for k, _ in committee.events(case)]
    # The same header from a server that is not ours proves nothing either way.
    forged = {"Authentication-Results": failed["Authentication-Results"].replace(
        "mx.conduct.example.org", "mx.attacker.example")}
    committee.reply(case, "bob", "close\n", headers=forged)
    assert _transcript(committee)[0][1] is True


def test_a_relay_reaches_the_person_a_member_filed_for(committee: Committee) -> None:
    committee.intake.accept(Inbound(
        message(sender=EMAIL["carol"], body="on-behalf-of rita@chat.example\nchannel chat\n\n"
                                            "Rita told me in a DM that ...\n"),
        EMAIL["carol"], (split_recipient(CONDUCT, committee.config.committee),), "smtp"))
    committee.no_conflict(1)
    committee.reply(1, "carol", "relay reporter\n\nMay we call you?\n")
    [(_, applied, text)] = _transcript(committee)
    assert applied and "waits for a second member" in text  # reporter: approval needed
    committee.reply(1, "bob", "approve\n")
    [(values, rendered)] = committee.rendered(Outbox.kind == "relay")
    assert values.recipient.email == "rita@chat.example"
    assert rendered.text.startswith("Carol C writes to you as the representative")
    assert "May we call you?" in rendered.text
    with committee.store.unit_of_work() as session:
        assert session.scalars(select(Outbox.status).where(Outbox.kind == "relay")).one() \
            == "queued"


def test_an_emergency_measure_is_confirmed_reversed_or_escalated(committee: Committee) -> None:
    from cocmail.schedule.emergencies import escalate_emergencies

    case = committee.report()
    pair = committee.on_duty(OPENED)
    others = [h for h in EMAIL if h not in pair]
    committee.reply(case, pair[0], "emergency platform-ban from the chat, pending review\n")
    [(_, applied, text)] = _transcript(committee)
    assert applied and "must confirm or reverse it by 2026-11-26 10:00 UTC" in text
    # Those who read the case are told at once; the others get an urgent conflict check.
    assert [h for step, h in committee.mails("status") if step.startswith("emergency:")] \
        == [pair[1]]
    assert sorted(h for step, h in committee.mails("conflict")
                  if step.startswith("emergency:")) == sorted(others)
    committee.reply(case, pair[0], "emergency confirm\n")
    [(_, applied, text)] = _transcript(committee)
    assert not applied and "cannot confirm it" in text
    committee.reply(case, pair[0], "emergency coaching\n")
    [(_, applied, text)] = _transcript(committee)
    assert not applied and "already waiting" in text

    def sweep(at: datetime.datetime) -> int:
        with committee.store.unit_of_work() as session:
            return escalate_emergencies(session.connection(), committee.enqueue, at)

    assert sweep(OPENED + 23 * HOUR) == 0
    # Nobody answered in 24 hours: every member of the case is paged, once.
    assert sweep(OPENED + 25 * HOUR) == len(EMAIL)
    assert sweep(OPENED + 26 * HOUR) == 0
    assert sorted(h for step, h in committee.mails("escalation")
                  if step.startswith("emergency:")) == sorted(pair)
    [(_, rendered), _] = committee.rendered(Outbox.kind == "escalation")
    assert rendered.subject == "URGENT: emergency measure not confirmed or reversed"
    committee.reply(case, pair[1], "emergency reverse the respondent apologised\n")
    [(_, applied, text)] = _transcript(committee)
    assert applied and "reversed" in text
    kinds = [k for k, _ in committee.events(case)]
    assert "emergency" in kinds and "emergency-reversed" in kinds


def test_a_member_still_to_answer_the_conflict_check_can_only_answer_it(
        committee: Committee) -> None:
    case = committee.report()
    other = next(h for h in EMAIL if h not in committee.on_duty(OPENED))
    committee.reply(case, other, "ack\nseverity high\n")
    lines = _transcript(committee)
    assert [applied for _, applied, _ in lines] == [False, False]
    assert "conflict check" in lines[0][2]
    committee.reply(case, other, "help\n")
    [(_, applied, text)] = _transcript(committee)
    assert applied and "no-conflict" in text and "relay <role|email>" in text
    committee.reply(case, other, "no-conflict\n")
    [(values, rendered)] = committee.rendered(Outbox.kind == "casefile")
    assert values.recipient.handle == other
    assert "Someone was rude to me at the meetup." in rendered.text
