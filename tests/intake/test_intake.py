"""The intake service in process, on SQLite and PostgreSQL: routing, threading,
quarantine and replay, with a fixed clock."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from cocmail.case import access, members
from cocmail.clock import FixedClock
from cocmail.config import Committee, Member
from cocmail.errors import StoreUnavailable
from cocmail.intake.inbound import Accepted, Inbound, Reading
from cocmail.intake.service import Intake
from cocmail.notify.enqueue import Enqueue
from cocmail.route.addresses import reply_address, split_recipient
from cocmail.route.tokens import make_token
from cocmail.store import keyring, migrate
from cocmail.store.db import Store
from cocmail.store.models import Case, Event, Message, Participant, Quarantine
from tests.conftest import CONDUCT, MEMBERS, keyed
from tests.mail import message

KEY = b"k" * 32
COMMITTEE = Committee("Test", "conduct", CONDUCT, "+", None, None, ())
GROUP = Committee("Test", "conduct", CONDUCT, "+", None, "conduct.conduct.example.org", ())


def intake_for(store: Store, committee: Committee = COMMITTEE) -> Intake:
    now = dt.datetime(2026, 11, 25, 10, tzinfo=dt.UTC)
    members.start(store, committee, now)
    return Intake(store, committee, KEY, FixedClock(now), Enqueue(KEY, committee,
                                                                   answers_per_day=10))


def deliver(intake: Intake, raw: bytes, to: str = CONDUCT,
            envelope_from: str | None = "rita@reporter.example"):
    return intake.accept(Inbound(raw, envelope_from, (split_recipient(to, intake.committee),),
                                  "smtp"))


def reporter_address(store: Store, case_id: int) -> str:
    with store.unit_of_work() as s:
        p = s.scalars(select(Participant).where(Participant.case_id == case_id,
                                                Participant.role == "reporter")).one()
        return reply_address(COMMITTEE, case_id, make_token(KEY, case_id, p.id))


class TestRouting:
    def test_new_report_opens_case_with_reporter_and_event(self, store: Store) -> None:
        result = deliver(intake_for(store), message())
        assert result.opened and result.case_id == 1
        with store.unit_of_work() as s:
            case = s.get(Case, 1)
            assert case is not None and case.state == "new"
            assert [(p.role, p.email) for p in case.participants] == [
                ("reporter", "rita@reporter.example")]
            # The test committee has no members: nobody can be paged, and that is recorded.
            assert [e.kind for e in case.events] == ["opened", "nobody-paged"]
            assert case.opened_at == dt.datetime(2026, 11, 25, 10, tzinfo=dt.UTC)

    def test_without_a_rotation_every_member_has_the_report_and_nothing_is_wrong(
            self, store: Store, caplog: pytest.LogCaptureFixture) -> None:
        members = tuple(Member(h, n, e, emp, "UTC", tuple(r)) for h, n, e, emp, r in MEMBERS)
        committee = Committee("Test", "conduct", CONDUCT, "+", None, None, members)
        with caplog.at_level(logging.ERROR):
            result = deliver(intake_for(store, committee), message())
        with store.unit_of_work() as s:
            case = s.get(Case, result.case_id)
            assert case is not None
            assert [e.kind for e in case.events] == ["opened"]
            # Each member has a seat; where their mail goes is theirs (members.email).
            seats = access.load(s.connection(), [case.id])[case.id].seats
            assert {seat.email for seat in seats} == {m.email for m in members}
            assert all(p.cleared_at is not None for p in case.participants
                       if p.role == "member")
        assert caplog.records == []  # no "nobody could be paged": nobody is on duty

    @pytest.mark.parametrize("headers, sender, envelope_from", [
        ({"Auto-Submitted": "auto-replied"}, "rita@reporter.example", "rita@reporter.example"),
        ({"Precedence": "bulk"}, "rita@reporter.example", "rita@reporter.example"),
        ({"List-Id": "<devs.lists.example>"}, "rita@reporter.example", "rita@reporter.example"),
        ({"X-Autoreply": "yes"}, "rita@reporter.example", "rita@reporter.example"),
        ({}, "MAILER-DAEMON@mx.example", ""),
        ({"Content-Type": 'multipart/report; report-type=delivery-status; boundary="b"'},
         "postmaster@mx.example", "postmaster@mx.example"),
        ({"X-Cocmail-Loop": "conduct@conduct.example.org"}, "x@y.example", "x@y.example"),
    ])
    def test_automatic_mail_to_bare_address_opens_no_case(
            self, store: Store, headers: dict[str, str], sender: str,
            envelope_from: str) -> None:
        result = deliver(intake_for(store), message(sender=sender, headers=headers),
                         envelope_from=envelope_from)
        assert result.case_id is None and result.quarantine_reason == "automatic"

    def test_auto_submitted_no_is_a_person(self, store: Store) -> None:
        result = deliver(intake_for(store), message(headers={"Auto-Submitted": "no"}))
        assert result.opened

    def test_committee_group_report_belongs_to_original_sender(self, store: Store) -> None:
        """Through the committee's own group (List-Id matches committee.list_id, From
        rewritten for DMARC), the report opens a case for the original sender."""
        raw = message(sender=CONDUCT, headers={
            "List-Id": "<conduct.conduct.example.org>", "Precedence": "list",
            "Reply-To": "Rita <rita@reporter.example>"}).replace(
            b"From: Rita Reporter <" + CONDUCT.encode() + b">",
            b"From: 'Rita' via conduct <" + CONDUCT.encode() + b">")
        result = deliver(intake_for(store, GROUP), raw, envelope_from="bounces@groups.example")
        assert result.opened
        with store.unit_of_work() as s:
            assert s.scalars(select(Participant.email)).all() == ["rita@reporter.example"]

    def test_follow_up_by_token_is_verified(self, store: Store) -> None:
        intake = intake_for(store)
        deliver(intake, message())
        to = reporter_address(store, 1)
        result = deliver(intake, message(subject="Re: more", to=to), to=to)
        assert result.case_id == 1 and not result.opened
        with store.unit_of_work() as s:
            m = s.get(Message, result.message_id)
            assert m is not None and m.verified and m.participant_id is not None

    def test_auto_reply_to_token_address_threads_but_is_marked(self, store: Store) -> None:
        """A reporter's out-of-office answer to our mail joins the case, marked automatic
        so that nothing answers it."""
        intake = intake_for(store)
        deliver(intake, message())
        to = reporter_address(store, 1)
        result = deliver(intake, message(to=to, headers={"Auto-Submitted": "auto-replied"}),
                         to=to)
        assert result.case_id == 1
        with store.unit_of_work() as s:
            m = s.get(Message, result.message_id)
            assert m is not None and m.automatic == "Auto-Submitted: auto-replied"

    def test_forged_token_is_quarantined(self, store: Store) -> None:
        intake = intake_for(store)
        deliver(intake, message())
        forged = f"conduct+1.{'a' * 16}@conduct.example.org"
        result = deliver(intake, message(to=forged), to=forged)
        assert result.quarantine_reason == "bad-token"
        with store.unit_of_work() as s:
            q = s.scalars(select(Quarantine)).one()
            assert q.claimed_case_id == 1

    def test_token_of_another_case_does_not_move(self, store: Store) -> None:
        """A token made for case 1 pasted onto case 2's number does not verify."""
        intake = intake_for(store)
        deliver(intake, message())
        deliver(intake, message(sender="sam@reporter.example"),
                envelope_from="sam@reporter.example")
        token = reporter_address(store, 1).split(".", 1)[1].split("@")[0]
        moved = f"conduct+2.{token}@conduct.example.org"
        result = deliver(intake, message(sender="sam@reporter.example", to=moved), to=moved,
                         envelope_from="sam@reporter.example")
        assert result.quarantine_reason == "bad-token"

    def test_unknown_case_is_quarantined(self, store: Store) -> None:
        to = f"conduct+99.{'a' * 16}@conduct.example.org"
        result = deliver(intake_for(store), message(to=to), to=to)
        assert result.quarantine_reason == "unknown-case"

    def test_unparseable_is_stored_raw_and_quarantined(self, store: Store) -> None:
        raw = b"\x00\x01\x02 this is not mail\r\nat all\r\n"
        result = deliver(intake_for(store), raw)
        assert result.quarantine_reason == "unparseable"
        with store.unit_of_work() as s:
            m = s.get(Message, result.message_id)
            assert m is not None and m.raw == raw

    def test_concurrent_duplicate_is_stored_once(self, store: Store) -> None:
        """Two deliveries of the same bytes racing each other: one row, both accepted."""
        from concurrent.futures import ThreadPoolExecutor

        intake = intake_for(store)
        raw = message()
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: deliver(intake, raw), range(8)))
        assert len({r.message_id for r in results}) == 1
        assert sum(not r.duplicate for r in results) == 1


class TestReadAhead:
    def test_a_delivery_read_by_its_edge_is_not_read_again(
            self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        """The IMAP poller reads messages ahead while the writer is busy: the writer
        then neither parses nor hashes them again, and stores what was read."""
        raw = message(subject="read ahead", message_id="ahead@reporter.example")
        reading = Reading.of(raw)
        to = (split_recipient(CONDUCT, COMMITTEE),)

        def not_again(_raw: bytes) -> None:
            raise AssertionError("read again")

        monkeypatch.setattr("cocmail.intake.inbound.read", not_again)
        monkeypatch.setattr("cocmail.intake.inbound.dedupe_key", not_again)
        intake = intake_for(store)
        with pytest.raises(AssertionError, match="read again"):  # as the writer would
            intake.accept(Inbound(message(), "rita@reporter.example", to, "imap"))
        result = intake.accept(Inbound(raw, None, to, "imap", reading))
        assert result.opened and not result.duplicate
        with store.unit_of_work() as s:
            stored = s.get(Message, result.message_id)
            assert stored is not None
            assert (stored.subject, stored.message_id, stored.dedupe_key, stored.text) == (
                "read ahead", "ahead@reporter.example", keyring.keyed(s.connection(), reading.key),
                reading.parsed.text if reading.parsed else None)


class TestBatches:
    def test_one_batch_with_copies_and_a_reply_to_itself(self, store: Store) -> None:
        """Group commit: a batch holding a report, a copy of it, a reply to it and another
        report stores three messages, threads the reply, and answers the copy as a
        duplicate of the first."""
        intake = intake_for(store)
        first = message(message_id="a@reporter.example")
        reply = message(subject="Re: more", headers={"In-Reply-To": "<a@reporter.example>"})
        other = message(sender="sam@reporter.example")

        def d(raw: bytes, sender: str = "rita@reporter.example") -> Inbound:
            return Inbound(raw, sender, (split_recipient(CONDUCT, COMMITTEE),), "smtp")

        results = intake.accept_batch([d(first), d(first), d(reply),
                                       d(other, "sam@reporter.example")])
        assert all(not isinstance(r, Exception) for r in results)
        a, copy, threaded, b = results
        assert a.opened and not a.duplicate
        assert copy.duplicate and copy.message_id == a.message_id
        assert threaded.case_id == a.case_id and not threaded.opened
        assert b.opened and b.case_id != a.case_id
        with store.unit_of_work() as s:
            assert s.scalar(text("SELECT count(*) FROM messages")) == 3
            assert s.scalars(select(Participant.email).order_by(Participant.id)).all() == [
                "rita@reporter.example", "sam@reporter.example"]

    def test_store_failure_fails_the_whole_batch(self, tmp_path: Path) -> None:
        """With the database locked, every message of the batch gets StoreUnavailable
        and none of them is kept."""
        import sqlite3

        from cocmail.errors import StoreUnavailable

        db = tmp_path / "locked.db"
        store = Store(f"sqlite:///{db}", dt.timedelta(seconds=0.5))
        migrate.upgrade(store)
        keyed(store)
        intake = intake_for(store)
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            results = intake.accept_batch([
                Inbound(message(), "r@x.example", (split_recipient(CONDUCT, COMMITTEE),),
                         "smtp") for _ in range(3)])
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert all(isinstance(r, StoreUnavailable) for r in results)
        with store.unit_of_work() as s:
            assert s.scalar(text("SELECT count(*) FROM messages")) == 0
        store.dispose()


class TestBugs:
    def test_a_routing_bug_loses_nothing(self, store: Store) -> None:
        """When routing one message of a batch raises (a bug), the others are stored as
        usual and that one is kept raw and quarantined as internal-error."""

        class Buggy(Intake):
            def _decide(self, db, parsed, *args):  # type: ignore[no-untyped-def]
                if parsed is not None and parsed.subject == "BOOM":
                    raise KeyError("a bug")
                return super()._decide(db, parsed, *args)

        intake = Buggy(store, COMMITTEE, KEY, FixedClock(dt.datetime(2026, 11, 25, tzinfo=dt.UTC)),
                       Enqueue(KEY, COMMITTEE, answers_per_day=10))
        boom = message(subject="BOOM")

        def d(raw: bytes) -> Inbound:
            return Inbound(raw, "rita@reporter.example", (split_recipient(CONDUCT, COMMITTEE),),
                            "smtp")

        before, failing, after = intake.accept_batch([d(message()), d(boom), d(message())])
        assert not isinstance(before, Exception) and before.opened
        assert not isinstance(after, Exception) and after.opened
        assert not isinstance(failing, Exception)
        assert failing.quarantine_reason == "internal-error"
        with store.unit_of_work() as s:
            m = s.get(Message, failing.message_id)
            assert m is not None and m.raw == boom and m.case_id is None
            q = s.scalars(select(Quarantine)).one()
            assert q.detail == "routing failed: KeyError"

    def test_one_by_one_stops_at_the_first_that_cannot_be_stored(self, store: Store) -> None:
        """Stored one by one after a bug, a message the store refuses is not passed
        by the ones behind it (a reply stored before its report would open a case
        of its own): they get the same answer, and nothing of them is kept."""

        class Failing(Intake):
            def _decide(self, db, parsed, *args):  # type: ignore[no-untyped-def]
                if parsed is not None and parsed.subject == "BOOM":
                    raise KeyError("a bug")
                return super()._decide(db, parsed, *args)

            def _store_alone(self, item):  # type: ignore[no-untyped-def]
                if item.parsed is not None and item.parsed.subject == "DOWN":
                    return StoreUnavailable("OperationalError: disk I/O error")
                return super()._store_alone(item)

        intake = Failing(store, COMMITTEE, KEY,
                         FixedClock(dt.datetime(2026, 11, 25, tzinfo=dt.UTC)),
                         Enqueue(KEY, COMMITTEE, answers_per_day=10))

        def d(raw: bytes) -> Inbound:
            return Inbound(raw, "rita@reporter.example", (split_recipient(CONDUCT, COMMITTEE),),
                            "imap")

        raws = [message(), message(subject="BOOM"), message(subject="DOWN"),
                message(subject="after")]
        first, boom, down, after = intake.accept_batch([d(raw) for raw in raws])
        assert isinstance(first, Accepted) and first.opened
        assert isinstance(boom, Accepted) and boom.quarantine_reason == "internal-error"
        assert isinstance(down, StoreUnavailable) and after is down
        with store.unit_of_work() as s:
            assert list(s.scalars(select(Message.raw).order_by(Message.id))) == raws[:2]

    def test_absurdly_long_from_address_is_no_address(self, store: Store) -> None:
        """A From address longer than any real one is not taken as the reporter's (and
        does not overflow a column on PostgreSQL); the envelope sender is used."""
        long_from = "x" * 300 + "@reporter.example"
        result = deliver(intake_for(store), message(sender=long_from))
        assert result.opened
        with store.unit_of_work() as s:
            assert s.scalars(select(Participant.email)).all() == ["rita@reporter.example"]


class TestReplay:
    def test_replay_after_open_case_decision(self, store: Store) -> None:
        """A real report taken for an auto-reply is opened as a case by `replay --open-case`;
        the quarantine entry records how it was released."""
        intake = intake_for(store)
        result = deliver(intake, message(headers={"Precedence": "bulk"}))
        with store.unit_of_work() as s:
            entry = s.scalars(select(Quarantine)).one()
            again = intake.replay(s, entry)
            assert again.quarantine_reason == "automatic"
            opened = intake.replay(s, entry, open_case=True)
            assert opened.opened and opened.message_id == result.message_id
            assert entry.released_at is not None
            assert entry.resolution == f"opened case #{opened.case_id}"

    def test_replay_routes_again(self, store: Store) -> None:
        """A reply that arrived before its case existed is quarantined (unknown case);
        replayed once the case exists, it joins it."""
        intake = intake_for(store)
        deliver(intake, message())  # case 1, participant 1
        early = f"conduct+2.{make_token(KEY, 2, 2)}@conduct.example.org"
        first = deliver(intake, message(subject="early", to=early), to=early)
        assert first.quarantine_reason == "unknown-case"
        deliver(intake, message(subject="second report"))  # case 2, participant 2
        with store.unit_of_work() as s:
            entry = s.scalars(select(Quarantine)).one()
            again = intake.replay(s, entry)
        assert (again.case_id, again.quarantine_reason) == (2, None)
        with store.unit_of_work() as s:
            m = s.get(Message, first.message_id)
            assert m is not None and m.case_id == 2 and m.verified


class TestEvents:
    def test_events_are_append_only(self, store: Store) -> None:
        deliver(intake_for(store), message())
        with pytest.raises(DBAPIError), store.unit_of_work() as s:
            s.execute(text("UPDATE events SET kind = 'x'"))
        with pytest.raises(DBAPIError), store.unit_of_work() as s:
            s.execute(text("DELETE FROM events"))
        with store.unit_of_work() as s:
            assert s.scalars(select(Event.kind)).all() == ["opened", "nobody-paged"]


def test_migrations_walk_down_and_up(db_url: str, tmp_path: Path) -> None:
    """Every migration goes down and up again, on SQLite and PostgreSQL."""
    store = Store(db_url)
    migrate.upgrade(store)
    head = migrate.current_revision(store)
    migrate.downgrade(store, "base")
    assert migrate.current_revision(store) is None
    assert migrate.is_empty(store) or _only_alembic_table(store)
    migrate.upgrade(store)
    assert migrate.current_revision(store) == head
    store.dispose()


def _only_alembic_table(store: Store) -> bool:
    from sqlalchemy import inspect

    with store.engine.connect() as conn:
        return inspect(conn).get_table_names() == ["alembic_version"]
