"""Ways around the rule of who may see a case (``cocmail/case/access.py``) that an
attack on it found, each kept as a test: in process, through the intake as mail
would come, with a clock the test moves."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cocmail import config as config_module
from cocmail.case import access, members
from cocmail.case.purge import purge
from cocmail.errors import ConfigError
from cocmail.intake.inbound import Inbound
from cocmail.intake.service import Intake
from cocmail.notify import context
from cocmail.notify.enqueue import Enqueue
from cocmail.notify.templates import Templates
from cocmail.route import tokens
from cocmail.route.addresses import UnknownKeepOut, reply_address, split_recipient
from cocmail.route.tokens import make_token
from cocmail.schedule.emergencies import escalate_emergencies
from cocmail.schedule.reminders import queue_reminders
from cocmail.store.db import Store
from cocmail.store.models import Message, Outbox, Participant, Quarantine
from tests.committee import EMAIL, HOUR, KEY, OPENED, Committee
from tests.conftest import CONDUCT, DOMAIN, MEMBERS, write_config
from tests.mail import message

REPORTER = "rita@reporter.example"


@pytest.fixture
def committee(store: Store, tmp_path: Path, db_url: str) -> Committee:
    return Committee(store, tmp_path, db_url)


def _to(committee: Committee, case: int, handle: str, body: str, *extra: str,
        sender: str | None = None, headers: dict[str, str] | None = None) -> Any:
    """Member ``handle`` writes to their reply address of ``case`` and to ``extra``."""
    with committee.store.unit_of_work() as session:
        seat = session.scalars(select(Participant).where(
            Participant.case_id == case, Participant.handle == handle)).one()
        to = reply_address(committee.config.committee, case, make_token(KEY, case, seat.id))
    return _deliver(committee, message(sender=sender or EMAIL[handle], to=to,
                                       subject="Re: the case", body=body, headers=headers),
                    [to, *extra], sender or EMAIL[handle])


def _deliver(committee: Committee, raw: bytes, rcpts: list[str], envelope: str) -> Any:
    handles = members.start(committee.store, committee.config.committee,
                            committee.clock.now()).handles
    recipients = []
    for address in rcpts:
        try:
            recipients.append(split_recipient(address, committee.config.committee, handles))
        except UnknownKeepOut as exc:
            recipients.append(exc.recipient)
    committee.clock.advance(dt.timedelta(seconds=10))
    return committee.intake.accept(Inbound(raw, envelope, tuple(recipients), "imap"))


def _texts_to(committee: Committee, address: str) -> str:
    """Everything the queued and held mail to ``address`` would say, as sent (what
    the send-time check holds back is not sent)."""
    texts = []
    with committee.store.unit_of_work() as session:
        for row in session.scalars(select(Outbox).where(
                Outbox.recipient_index == committee.store.keyring.index_of(address),  # type: ignore[union-attr]
                Outbox.status.in_(("queued", "held")))):
            values = context.build(session, row, committee.config, KEY)
            if not isinstance(values, context.Cancelled):
                texts.append(Templates().render(row.kind, values).text)
    return "\n".join(texts)


def _standing(committee: Committee, case: int, handle: str) -> access.Standing:
    with committee.store.unit_of_work() as session:
        facts = access.load(session.connection(), [case])[case]
    [seat] = [s for s in facts.seats if s.handle == handle]
    return seat.standing


def _first_mail_id(committee: Committee, case: int) -> str:
    with committee.store.unit_of_work() as session:
        found = session.scalars(select(Outbox.message_id).where(
            Outbox.case_id == case).order_by(Outbox.id)).first()
        assert found is not None
        return found


def test_what_a_reply_kept_from_a_member_causes_is_kept_from_them_too(
        committee: Committee) -> None:
    """Alice's reply to her address and to without-bob: its note, the status mail
    of the emergency measure it takes, the reminder of the follow-up it sets and
    the measure's escalation all go to the others, never to Bob."""
    case = committee.report()
    committee.no_conflict(case)
    _to(committee, case, "alice", "emergency ban-sam SECRET-REASON\nfollow-up 1d SECRET-WHAT\n"
        "\nSECRET-NOTE\n", f"conduct+without-bob@{DOMAIN}")
    now = committee.clock.now() + 2 * 24 * HOUR
    with committee.store.unit_of_work() as session:
        assert queue_reminders(session.connection(), committee.enqueue, now) == 3
    with committee.store.unit_of_work() as session:
        assert escalate_emergencies(session.connection(), committee.enqueue, now) == 3
    bob = _texts_to(committee, EMAIL["bob"])
    for secret in ("SECRET-REASON", "SECRET-WHAT", "SECRET-NOTE", "ban-sam"):
        assert secret not in bob
        assert secret in _texts_to(committee, EMAIL["carol"])


def test_mail_threaded_as_the_reporter_keeps_nobody_out_of_the_case(
        committee: Committee) -> None:
    """Anyone with a Message-ID of the case can answer it with the reporter's
    address in From: to without-alice, that keeps Alice from that mail only,
    not out of the case (her reply address proves the reporter; headers do not)."""
    case = committee.report()
    committee.no_conflict(case)
    known = _first_mail_id(committee, case)
    for headers in ({}, {"List-Id": "<conduct.conduct.example.org>",
                         "X-Original-From": REPORTER}):
        raw = message(sender=REPORTER if not headers else "sam@outside.example",
                      subject="Re: the report", body="FORGED\n",
                      headers={"In-Reply-To": known, **headers})
        _deliver(committee, raw, [f"conduct+without-alice@{DOMAIN}"], "sam@outside.example")
    assert _standing(committee, case, "alice") is access.Standing.READS
    assert "FORGED" not in _texts_to(committee, EMAIL["alice"])


def test_the_same_bytes_again_keep_a_member_out_only_as_their_first_delivery_would(
        committee: Committee) -> None:
    """The report itself to without-bob again, within the days an MTA retries: Bob
    is out of the case. A threaded mail again, or the report a week later (bytes
    anyone who was sent them could send): kept from that member, no more."""
    case = committee.report()
    committee.no_conflict(case)
    known = _first_mail_id(committee, case)
    threaded = message(body="THREADED\n", headers={"In-Reply-To": known})
    _deliver(committee, threaded, [CONDUCT], REPORTER)
    assert _deliver(committee, threaded, [f"conduct+without-carol@{DOMAIN}"],
                    REPORTER).duplicate
    assert _standing(committee, case, "carol") is access.Standing.READS
    with committee.store.unit_of_work() as session:
        raw = session.scalars(select(Message.raw).where(Message.case_id == case)
                              .order_by(Message.id)).first()
    assert raw is not None
    committee.clock.advance(dt.timedelta(days=6))
    _deliver(committee, raw, [f"conduct+without-dave@{DOMAIN}"], REPORTER)
    assert _standing(committee, case, "dave") is access.Standing.READS
    second = committee.report()
    with committee.store.unit_of_work() as session:
        raw = session.scalars(select(Message.raw).where(Message.case_id == second)).first()
    assert raw is not None
    committee.clock.advance(HOUR)
    _deliver(committee, raw, [f"conduct+without-bob@{DOMAIN}"], REPORTER)
    with committee.store.unit_of_work() as session:
        assert 2 in access.load(session.connection(), [second])[second].kept_out


def test_a_former_handle_keeps_its_member_out_and_an_unknown_one_keeps_it_from_all(
        store: Store, tmp_path: Path, db_url: str) -> None:
    """After Bob became Robert, a keep-out address with his old handle (from an
    acknowledgement sent before) still keeps him out; one that names nobody keeps
    the message from everyone (quarantined), also when it is replayed."""
    first = Committee(store, tmp_path, db_url)
    first.report()
    roster = [m if m[0] != "bob" else ("robert", "Robert B", m[2], m[3], m[4]) for m in MEMBERS]
    folder = tmp_path / "renamed"
    folder.mkdir()
    config = config_module.load(write_config(folder, db_url, members=roster))
    members.start(store, config.committee, OPENED)
    committee = first
    committee.config = config
    committee.enqueue = Enqueue.for_config(config, KEY)
    committee.intake = Intake(store, config.committee, KEY, committee.clock, committee.enqueue)
    accepted = _deliver(committee, message(body="OLD-HANDLE\n"), [f"conduct+without-bob@{DOMAIN}"],
                        REPORTER)
    with store.unit_of_work() as session:
        facts = access.load(session.connection(), [accepted.case_id])[accepted.case_id]
    assert list(facts.kept_out.values()) == ["robert"]
    assert all(s.handle != "robert" for s in facts.seats)
    unknown = _deliver(committee, message(body="UNKNOWN\n"),
                       [CONDUCT, f"conduct+without-zed@{DOMAIN}"], REPORTER)
    assert unknown.quarantine_reason == "unknown-keep-out" and unknown.case_id is None
    with store.unit_of_work() as session:
        entry = session.scalars(select(Quarantine).where(
            Quarantine.message_id == unknown.message_id)).one()
        again = committee.intake.replay(session, entry, open_case=True)
    assert again.quarantine_reason == "unknown-keep-out"


def test_members_may_swap_addresses_or_take_the_address_of_one_who_left(
        committee: Committee, tmp_path: Path, db_url: str) -> None:
    """Once there are cases, two members who swap addresses, and a member who takes
    the address of one who left, start as any roster change does: each keeps
    their seats, and answers from the new address."""
    case = committee.report()
    committee.no_conflict(case)
    swapped = [("alice", "Alice A", EMAIL["bob"], "Acme", ["chair"]),
               ("bob", "Bob B", EMAIL["alice"], "Globex", []),
               ("carol", "Carol C", EMAIL["carol"], "Initech", [])]
    folder = tmp_path / "swapped"
    folder.mkdir()
    config = config_module.load(write_config(folder, db_url, members=swapped))
    members.start(committee.store, config.committee, committee.clock.now())
    taken = [*swapped[:2], ("carol", "Carol C", EMAIL["dave"], "Initech", [])]
    config = config_module.load(write_config(folder, db_url, members=taken))
    members.start(committee.store, config.committee, committee.clock.now())
    committee.config = config
    _to(committee, case, "alice", "severity high\n", sender=EMAIL["bob"])
    _to(committee, case, "carol", "severity low\n", sender=EMAIL["dave"])
    with committee.store.unit_of_work() as session:
        facts = access.load(session.connection(), [case])[case]
    assert {s.handle: s.email for s in facts.seats} == {
        "alice": EMAIL["bob"], "bob": EMAIL["alice"], "carol": EMAIL["dave"], "dave": ""}
    assert {s.handle: s.standing for s in facts.seats}["dave"] is access.Standing.REMOVED
    assert [k for k, _ in committee.events(case)].count("severity") == 2


def test_a_roster_change_of_handle_and_address_at_once_is_said_in_the_log(
        committee: Committee, tmp_path: Path, db_url: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """Both at once is a new member, as the rule says; the start says so plainly."""
    roster = [m if m[0] != "bob" else ("robert", "Robert B", "robert@new.example", m[3], m[4])
              for m in MEMBERS]
    folder = tmp_path / "both"
    folder.mkdir()
    config = config_module.load(write_config(folder, db_url, members=roster))
    with caplog.at_level(logging.WARNING, logger="cocmail.case.members"):
        members.start(committee.store, config.committee, committee.clock.now())
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "bob" in line and "robert" in line and "one of the two at a time" in line


def test_a_purge_takes_the_bounces_and_auto_replies_of_the_case(
        committee: Committee) -> None:
    """A bounce of a page carries the report; an auto-reply answers a mail of the
    case: both are quarantined as automatic, claimed by the case, and purged
    with it."""
    case = committee.report()
    committee.no_conflict(case)
    page = _first_mail_id(committee, case)
    bounce = message(sender="mailer-daemon@members.example", subject="Undelivered",
                     body=f"Message-ID: {page}\nSomeone was rude to me at the meetup.\n")
    auto = message(subject="Out of office", body="BACK-MONDAY\n",
                   headers={"In-Reply-To": page, "Auto-Submitted": "auto-replied"})
    for raw in (bounce, auto):
        accepted = _deliver(committee, raw, [CONDUCT], "")
        assert accepted.quarantine_reason == "automatic"
    with committee.store.unit_of_work() as session:
        assert [q.claimed_case_id for q in session.scalars(select(Quarantine))] == [case, case]
        purge(session.connection(), case)
    with committee.store.unit_of_work() as session:
        assert all(m.raw is None and m.text is None for m in session.scalars(select(Message)))


def test_a_conflict_check_names_no_emergency_measure(committee: Committee) -> None:
    """What a member took as an emergency measure is their own words: a conflict
    check says there is one, never what."""
    case = committee.report()
    with committee.store.unit_of_work() as session:
        paged = [h for h, in session.execute(select(Participant.handle).where(
            Participant.case_id == case, Participant.cleared_at.is_not(None)))]
    _to(committee, case, paged[0], "emergency ban-sam-from-the-venue\n")
    checks = committee.rendered(Outbox.kind == "conflict", Outbox.step.like("emergency:%"))
    assert checks
    for _, rendered in checks:
        text = " ".join(rendered.text.split())
        assert "ban-sam" not in text and "an emergency measure" in text


def test_a_short_or_empty_token_key_from_the_environment_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key of a few bytes is found from one reply address, and with it every
    token: refused with the key's name, as a short key file is."""
    config = config_module.load(write_config(tmp_path, "sqlite:///x.db"))
    for value in ("abc", " \n"):
        monkeypatch.setenv(config.secrets.token_key_env, value)
        with pytest.raises(ConfigError, match=r"secrets\.token_key_env"):
            tokens.load_key(config)
    monkeypatch.setenv(config.secrets.token_key_env, "k" * 16)
    assert tokens.load_key(config) == b"k" * 16


def test_a_member_address_may_not_be_the_conduct_address(tmp_path: Path) -> None:
    """Mail to it would come back in as a report (a loop, and the case's content
    in the quarantine): one line naming the key."""
    for email in (CONDUCT, f"conduct+without-alice@{DOMAIN}"):
        path = write_config(tmp_path, "sqlite:///x.db",
                            members=[("alice", "Alice", email, "", [])])
        with pytest.raises(ConfigError, match=r"committee\.members\[0\]\.email"):
            config_module.load(path)
